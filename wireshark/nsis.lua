-- nsis.lua: Wireshark/tshark dissector for GIST (RFC 5971) and the NATFW NSLP (RFC 5973),
-- with RFC 5981 SESSION_AUTH attributes and mip6bench's private Mobile IPv6 flow object.
--
-- Load it with `tshark -X lua_script:/path/to/nsis.lua ...` or copy it into Wireshark's
-- personal Lua plugins folder (Help > About Wireshark > Folders). Written for the Lua 5.2
-- API of Wireshark 4.0 (Debian 12); it uses no bit-operation library and no API newer
-- than that.
--
-- GIST: UDP port 270. A datagram that starts with the magic number is a Q-mode message
-- (the common header follows it), anything else is read as a D-mode message starting
-- with the common header. C-mode (TCP) streams can be decoded with "Decode As" (or
-- `-d tcp.port==N,gist_cmode`). NSLP-Data goes to the dissector registered for the
-- message's NSLPID in the table "gist.nslpid"; the NATFW NSLP registers itself there.
--
-- Every number the dissectors know is in the tables below (the mip6bench encoders are
-- mip6bench/gist/wire.py, mip6bench/natfw/wire.py and mip6bench/aaa/token.py;
-- tests/interop/test_nsis_dissector.py fails when a number there and here disagree).
-- Malformed input (lengths that do not add up, truncated objects) is flagged with expert
-- info in the "malformed" group at error severity; protocol violations that still parse
-- (unknown types, reserved bits set, missing objects) with warnings.

---------------------------------------------------------------------------- constants
local GIST = {
    UDP_PORT = 270,
    MAGIC = 0x4e04bda5,
    VERSION = 1,
    HEADER_LEN = 8,
    MSG = { [0] = "Query", [1] = "Response", [2] = "Confirm", [3] = "Data", [4] = "Error",
            [5] = "MA-Hello" },
    FLAG_C = 0x80,                          -- top bit of the type byte
    FLAG_S = 0x80, FLAG_R = 0x40, FLAG_E = 0x20,
    OBJ = { [0] = "MRI", [1] = "Session-ID", [2] = "NLI", [3] = "Stack-Proposal",
            [4] = "Stack-Configuration-Data", [5] = "Query-Cookie", [6] = "Responder-Cookie",
            [7] = "NAT-Traversal", [8] = "NSLP-Data", [9] = "Error", [10] = "Hello-ID" },
    AB = { [0] = "Mandatory", [1] = "Ignore", [2] = "Forward", [3] = "Invalid" },
    MRM = { [0] = "Path-Coupled", [1] = "Loose-End" },
    -- path-coupled MRI flags, in the 16-bit word after MRM-ID|N|reserved
    MRI_P = 0x0800, MRI_T = 0x0400, MRI_F = 0x0200, MRI_S = 0x0100, MRI_A = 0x0080,
    MRI_B = 0x0040, MRI_D = 0x0020,
    MRI_N = 0x80,
    LE_D = 0x0800,                          -- loose-end MRI D flag
    MA_PROTO = { [1] = "Forwards-TCP", [2] = "TLS" },
    MA_TCP = 1,                             -- its options data: the responder's port (16 bits)
    SESSION_ID_LEN = 16,
    ERR_CLASS = { [0] = "Informational", [1] = "Success", [2] = "Protocol-Error",
                  [3] = "Transient-Failure", [4] = "Permanent-Failure" },
    ERR_CODE = { [1] = "Common Header Parse Error", [2] = "Hop Limit Exceeded",
                 [3] = "Incorrect Encapsulation", [4] = "Incorrectly Delivered Message",
                 [5] = "No Routing State", [6] = "Unknown NSLPID", [7] = "Endpoint Found",
                 [8] = "Message Too Large", [9] = "Object Type Error",
                 [10] = "Object Value Error", [11] = "Invalid IP TTL",
                 [12] = "MRI Validation Failure" },
    -- subcodes by error code (A.4.4)
    ERR_SUBCODE = {
        [9] = { [0] = "Duplicate object", [1] = "Unrecognised object", [2] = "Missing object",
                [3] = "Invalid object type", [4] = "Untranslated object",
                [5] = "Invalid extensibility flags" },
        [10] = { [0] = "Incorrect length", [1] = "Value not supported",
                 [2] = "Invalid flag-field combination", [3] = "Empty list",
                 [4] = "Invalid cookie", [5] = "Stack-Proposal/Stack-Configuration-Data mismatch" },
    },
    ERR_S = 0x8000, ERR_M = 0x4000, ERR_C = 0x2000, ERR_D = 0x1000, ERR_Q = 0x0800,
    AI_TYPE = { [1] = "Message Length Info", [2] = "MTU Info", [3] = "Object Type Info",
                [4] = "Object Value Info" },
}
-- Object order and presence per message (section 5.1): {type, required}
GIST.GRAMMAR = {
    [0] = { {7, false}, {0, true}, {1, true}, {2, true}, {5, true}, {3, false}, {4, false}, {8, false} },
    [1] = { {7, false}, {0, true}, {1, true}, {2, true}, {5, true}, {6, false}, {3, false}, {4, false}, {8, false} },
    [2] = { {0, true}, {1, true}, {2, true}, {6, false}, {3, false}, {4, false}, {8, false} },
    [3] = { {7, false}, {0, true}, {1, true}, {2, false}, {8, true} },
    [4] = { {7, false}, {2, false}, {9, true} },
    [5] = { {10, true} },
}

local NATFW = {
    NSLPID = 33,
    MSG = { [0x1] = "CREATE", [0x2] = "EXT", [0x3] = "RESPONSE", [0x4] = "NOTIFY" },
    FLAG_P = 0x80,
    T_LT = 0x00C, T_EXTERNAL_IP = 0x00D, T_EXTERNAL_BINDING = 0x00E, T_EFI = 0x00F,
    T_INFO = 0x010, T_NONCE = 0x011, T_MSN = 0x012, T_DTINFO = 0x013, T_ICMP_TYPES = 0x014,
    T_SESSION_AUTH = 0x016, T_MIP6_FLOW = 0x7D0,
    AB = { [0] = "Mandatory", [1] = "Ignore", [2] = "Forward", [3] = "Reserved" },
    EFI_ACTION = { [0x0001] = "allow", [0x0002] = "deny" },
    SEVERITY = { [0x1] = "Informational", [0x2] = "Success", [0x3] = "Protocol error",
                 [0x4] = "Transient failure", [0x5] = "Permanent failure",
                 [0x7] = "Signaling session failure" },
    -- response codes by severity class
    INFO = {
        [0x1] = { [0x01] = "Route change: the signaling session may have changed its path",
                  [0x02] = "Re-authentication required",
                  [0x03] = "Node going down soon" },
        [0x2] = { [0x01] = "Success" },
        [0x3] = { [0x01] = "Illegal message type", [0x02] = "Wrong message length",
                  [0x03] = "Bad flags value", [0x04] = "Mandatory object missing",
                  [0x05] = "Illegal object present", [0x06] = "Unknown object present",
                  [0x07] = "Wrong object length", [0x08] = "Unknown field value",
                  [0x09] = "Invalid flag-field combination",
                  [0x0A] = "Duplicate object present",
                  [0x0B] = "EXT received on the external side" },
        [0x4] = { [0x01] = "Requested resources unavailable" },
        [0x5] = { [0x01] = "Authentication failed", [0x02] = "Authorization failed",
                  [0x03] = "Transport security required", [0x04] = "Internal or system error",
                  [0x05] = "No NAT here", [0x06] = "No edge-device here",
                  [0x07] = "NR not reached", [0x08] = "Tracing not allowed" },
        [0x7] = { [0x01] = "Session terminated asynchronously",
                  [0x02] = "Requested lifetime is too big",
                  [0x03] = "No reservation found for the request",
                  [0x04] = "Requested policy rule denied due to policy conflict",
                  [0x05] = "Unknown policy rule action",
                  [0x06] = "Requested rule action not applicable",
                  [0x07] = "DTINFO object required",
                  [0x08] = "Requested sub_ports value not permitted",
                  [0x09] = "Requested IP protocol unsupported",
                  [0x0A] = "Plain IP policy rules not permitted",
                  [0x0B] = "ICMP type not permitted",
                  [0x0C] = "Source IP address range too large",
                  [0x0D] = "Destination IP address range too large",
                  [0x0E] = "Source port range too large",
                  [0x0F] = "Destination port range too large" },
    },
    DT_I = 0x80, DT_P = 0x40, DT_S = 0x20,
    MIP6_KIND = { [1] = "MH (Mobility Header)", [2] = "HAO (data with a Home Address option)",
                  [3] = "RH2 (data with a type 2 routing header)",
                  [4] = "TUNNEL (reverse tunnel: IPv6-in-IPv6 with the home address as inner source)" },
    MIP6_KIND_MH = 1,
    MH_TYPE = { [0] = "BRR", [1] = "HoTI", [2] = "CoTI", [3] = "HoT", [4] = "CoT", [5] = "BU",
                [6] = "BA", [7] = "BE" },
    -- RFC 5981 SESSION_AUTH attributes: X-Types and, per X-Type, sub-types
    X_AUTH_ENT_ID = 1, X_SESSION_ID = 2, X_SOURCE_ADDR = 3, X_DEST_ADDR = 4,
    X_START_TIME = 5, X_END_TIME = 6, X_NSLP_OBJECT_LIST = 7, X_AUTHENTICATION_DATA = 8,
    X_TYPE = { [1] = "AUTH_ENT_ID", [2] = "SESSION_ID", [3] = "SOURCE_ADDR", [4] = "DEST_ADDR",
               [5] = "START_TIME", [6] = "END_TIME", [7] = "NSLP_OBJECT_LIST",
               [8] = "AUTHENTICATION_DATA" },
    SUB_IPV4 = 1, SUB_IPV6 = 2, SUB_FQDN = 3, SUB_HMAC_SIGNED = 10, SUB_NTP = 1,
    SUB_FLOW = 250,
    SUB_TYPE = {
        [1] = { [1] = "IPV4_ADDRESS", [2] = "IPV6_ADDRESS", [3] = "FQDN", [4] = "ASCII_DN",
                [5] = "UNICODE_DN", [6] = "URI", [7] = "KRB_PRINCIPAL", [8] = "X509_V3_CERT",
                [9] = "PGP_CERT", [10] = "HMAC_SIGNED" },
        [3] = { [1] = "IPV4_ADDRESS", [2] = "IPV6_ADDRESS", [3] = "UDP_PORT_LIST",
                [4] = "TCP_PORT_LIST", [5] = "SPI" },
        [4] = { [1] = "IPV4_ADDRESS", [2] = "IPV6_ADDRESS", [3] = "UDP_PORT_LIST",
                [4] = "TCP_PORT_LIST", [5] = "SPI",
                [250] = "FLOW (mip6bench: protocol, prefix length, port, prefix)" },
        [5] = { [1] = "NTP_TIMESTAMP" },
        [6] = { [1] = "NTP_TIMESTAMP" },
    },
    TRANSFORM = { [2] = "AUTH_HMAC_SHA1_96", [12] = "AUTH_HMAC_SHA2_256_128" },
    NTP_UNIX_OFFSET = 2208988800,
}
NATFW.OBJ = {
    [NATFW.T_LT] = "NATFW_LT", [NATFW.T_EXTERNAL_IP] = "NATFW_EXTERNAL_IP",
    [NATFW.T_EXTERNAL_BINDING] = "NATFW_EXTERNAL_BINDING", [NATFW.T_EFI] = "NATFW_EFI",
    [NATFW.T_INFO] = "NATFW_INFO", [NATFW.T_NONCE] = "NATFW_NONCE", [NATFW.T_MSN] = "NATFW_MSN",
    [NATFW.T_DTINFO] = "NATFW_DTINFO", [NATFW.T_ICMP_TYPES] = "NATFW_ICMP_TYPES",
    [NATFW.T_SESSION_AUTH] = "SESSION_AUTH_OBJECT",
    [NATFW.T_MIP6_FLOW] = "MIP6_FLOW (mip6bench, private use)",
}
-- exact body length of fixed-size objects
NATFW.FIXED = { [NATFW.T_LT] = 4, [NATFW.T_EFI] = 4, [NATFW.T_MSN] = 4, [NATFW.T_NONCE] = 4,
                [NATFW.T_INFO] = 4, [NATFW.T_EXTERNAL_IP] = 8, [NATFW.T_EXTERNAL_BINDING] = 8 }
-- objects each message must carry (RFC 5973 section 4.3)
NATFW.MANDATORY = {
    [0x1] = { NATFW.T_LT, NATFW.T_EFI, NATFW.T_MSN },
    [0x2] = { NATFW.T_LT, NATFW.T_EFI, NATFW.T_MSN, NATFW.T_DTINFO },
    [0x3] = { NATFW.T_INFO, NATFW.T_MSN },
    [0x4] = { NATFW.T_INFO },
}

local NSLPID_NAMES = { [NATFW.NSLPID] = "NATFW NSLP" }

---------------------------------------------------------------------------- helpers
-- bit field of a non-negative integer, without a bit library (Lua 5.2 to 5.4 alike)
local function bits(value, shift, width)
    return math.floor(value / 2 ^ shift) % math.floor(2 ^ width)   -- integers in Lua 5.3+ too
end

local function has(value, mask)
    return bits(value, 0, 32) % (mask * 2) >= mask
end

local function name_of(tbl, value, fallback)
    local name = tbl[value]
    if name then return name end
    return fallback or string.format("Unknown (%d)", value)
end

local function pad4(n)
    return (4 - n % 4) % 4
end

-- an IPv4 (4 bytes) or IPv6 (16 bytes) address as text
local function addr_text(range)
    if range:len() == 4 then return tostring(range:ipv4()) end
    return tostring(range:ipv6())
end

-- Registers a table of ProtoFields with `proto` and makes its three expert infos:
-- malformed (malformed group, error), protocol violation and unknown value (warnings).
local function register(proto, fields, what)
    local list = {}
    for _, f in pairs(fields) do list[#list + 1] = f end
    proto.fields = list
    local prefix = proto.name:lower()
    local e = {
        malformed = ProtoExpert.new(prefix .. ".malformed", "Malformed " .. what .. " message",
                                    expert.group.MALFORMED, expert.severity.ERROR),
        protocol = ProtoExpert.new(prefix .. ".protocol", what .. " protocol violation",
                                   expert.group.PROTOCOL, expert.severity.WARN),
        unknown = ProtoExpert.new(prefix .. ".unknown", "Unknown " .. what .. " value",
                                  expert.group.UNDECODED, expert.severity.WARN),
    }
    proto.experts = { e.malformed, e.protocol, e.unknown }
    return e
end

-- need(r, off, n, item, what): true when range `r` has `n` bytes from `off`, else flags
-- `item` as malformed (truncated `what`)
local function needs(experts)
    return function(r, off, n, item, what)
        if r:len() - off >= n then return true end
        item:add_proto_expert_info(experts.malformed, string.format(
            "Truncated %s: needs %d bytes, %d left", what, n, math.max(r:len() - off, 0)))
        return false
    end
end

-- padding(r, tree, item): shows padding bytes, a warning on `item` when they are not zero
local function paddings(field, experts)
    return function(r, tree, item)
        if r:len() == 0 then return end
        tree:add(field, r)
        for i = 0, r:len() - 1 do
            if r(i, 1):uint() ~= 0 then
                item:add_proto_expert_info(experts.protocol, "Non-zero padding")
                return
            end
        end
    end
end

-- The object header GIST and the NSLPs share (RFC 5971 A.2, RFC 5974 5.2):
-- A(1) B(1) r(2) type(12) | r(4) length(12, 32-bit words of value). Adds the object's
-- subtree at `off` (its value clipped at `limit`) and flags what is wrong with the header;
-- `spec` = { proto, fields = {ab, rsv1, type, rsv2, len}, experts, label = function(type) }.
local function add_object(tvb, off, limit, root, spec)
    local first, second = tvb(off, 2):uint(), tvb(off + 2, 2):uint()
    local o = { ab = bits(first, 14, 2), type = bits(first, 0, 12), vlen = bits(second, 0, 12) * 4 }
    o.avail = math.min(o.vlen, limit - off - 4)
    o.tree = root:add(spec.proto, tvb(off, 4 + o.avail), spec.label(o.type))
    local f = spec.fields
    for i, field in ipairs({ f.ab, f.rsv1, f.type, f.rsv2, f.len }) do
        o.tree:add(field, tvb(off + (i <= 3 and 0 or 2), 2))
    end
    if bits(first, 12, 2) ~= 0 or bits(second, 12, 4) ~= 0 then
        o.tree:add_proto_expert_info(spec.experts.protocol, "Reserved object header bits set")
    end
    if o.ab == 3 then o.tree:add_proto_expert_info(spec.experts.protocol, "Extensibility flags AB=11") end
    if o.avail < o.vlen then
        o.tree:add_proto_expert_info(spec.experts.malformed, string.format(
            "Object of %d bytes overruns the message (%d bytes left)", o.vlen, o.avail))
    end
    return o
end

-- Runs an object's value decoder on its value range; a Lua error or unused bytes of a
-- whole object are flagged as malformed. Returns the decoder's second result.
local function decode_value(decoder, o, value, experts)
    local ok, used, extra = pcall(decoder, value, o.tree, o.tree)
    if not ok then
        o.tree:add_proto_expert_info(experts.malformed, "Undecodable object: " .. tostring(used))
    elseif used ~= nil and used < o.avail and o.avail == o.vlen then
        o.tree:add_proto_expert_info(experts.malformed, string.format(
            "%d trailing bytes in the object", o.avail - used))
    end
    return ok and extra or nil
end


---------------------------------------------------------------------------- GIST fields
local gist = Proto("gist", "General Internet Signalling Transport (RFC 5971)")
local gist_cmode = Proto("gist_cmode", "GIST C-mode (messages over a TCP stream)")

local gf = {
    magic = ProtoField.uint32("gist.magic", "Magic number", base.HEX),
    mode = ProtoField.string("gist.mode", "Mode"),
    version = ProtoField.uint8("gist.version", "Version", base.DEC),
    hops = ProtoField.uint8("gist.hops", "GIST hops", base.DEC),
    length = ProtoField.uint16("gist.length", "Message length (32-bit words)", base.DEC),
    nslpid = ProtoField.uint16("gist.nslpid", "NSLPID", base.DEC, NSLPID_NAMES),
    c = ProtoField.bool("gist.c", "C (Q-mode encapsulation)", 8, nil, GIST.FLAG_C),
    type = ProtoField.uint8("gist.type", "Type", base.DEC, GIST.MSG, 0x7F),
    flags = ProtoField.uint8("gist.flags", "Flags", base.HEX),
    flag_s = ProtoField.bool("gist.flags.s", "S (IP source = signalling source)", 8, nil, GIST.FLAG_S),
    flag_r = ProtoField.bool("gist.flags.r", "R (reply requested)", 8, nil, GIST.FLAG_R),
    flag_e = ProtoField.bool("gist.flags.e", "E (explicitly routed)", 8, nil, GIST.FLAG_E),
    flag_rsv = ProtoField.uint8("gist.flags.reserved", "Reserved", base.HEX, nil, 0x1F),

    obj_ab = ProtoField.uint16("gist.obj.ab", "A/B (extensibility)", base.DEC, GIST.AB, 0xC000),
    obj_rsv1 = ProtoField.uint16("gist.obj.reserved", "Reserved", base.HEX, nil, 0x3000),
    obj_type = ProtoField.uint16("gist.obj.type", "Object type", base.DEC, GIST.OBJ, 0x0FFF),
    obj_rsv2 = ProtoField.uint16("gist.obj.reserved2", "Reserved", base.HEX, nil, 0xF000),
    obj_len = ProtoField.uint16("gist.obj.length", "Length (32-bit words)", base.DEC, nil, 0x0FFF),
    obj_value = ProtoField.bytes("gist.obj.value", "Value"),
    padding = ProtoField.bytes("gist.padding", "Padding"),

    mri_mrm = ProtoField.uint8("gist.mri.mrm", "MRM-ID", base.DEC, GIST.MRM),
    mri_n = ProtoField.bool("gist.mri.n", "N (NAT traversed)", 8, nil, GIST.MRI_N),
    mri_rsv = ProtoField.uint8("gist.mri.reserved", "Reserved", base.HEX, nil, 0x7F),
    mri_ipver = ProtoField.uint16("gist.mri.ipver", "IP version", base.DEC, nil, 0xF000),
    mri_p = ProtoField.bool("gist.mri.p", "P (protocol)", 16, nil, GIST.MRI_P),
    mri_t = ProtoField.bool("gist.mri.t", "T (DS field)", 16, nil, GIST.MRI_T),
    mri_f = ProtoField.bool("gist.mri.f", "F (flow label)", 16, nil, GIST.MRI_F),
    mri_s = ProtoField.bool("gist.mri.s", "S (SPI)", 16, nil, GIST.MRI_S),
    mri_a = ProtoField.bool("gist.mri.a", "A (source port)", 16, nil, GIST.MRI_A),
    mri_b = ProtoField.bool("gist.mri.b", "B (destination port)", 16, nil, GIST.MRI_B),
    mri_d = ProtoField.bool("gist.mri.d", "D (upstream)", 16, nil, GIST.MRI_D),
    mri_flags_rsv = ProtoField.uint16("gist.mri.flags_reserved", "Reserved", base.HEX, nil, 0x001F),
    mri_le_d = ProtoField.bool("gist.mri.le_d", "D (upstream)", 16, nil, GIST.LE_D),
    mri_le_rsv = ProtoField.uint16("gist.mri.le_reserved", "Reserved", base.HEX, nil, 0x07FF),
    mri_src6 = ProtoField.ipv6("gist.mri.src_ipv6", "Source address"),
    mri_dst6 = ProtoField.ipv6("gist.mri.dst_ipv6", "Destination address"),
    mri_src4 = ProtoField.ipv4("gist.mri.src_ipv4", "Source address"),
    mri_dst4 = ProtoField.ipv4("gist.mri.dst_ipv4", "Destination address"),
    mri_src_prefix = ProtoField.uint8("gist.mri.src_prefix", "Source prefix", base.DEC),
    mri_dst_prefix = ProtoField.uint8("gist.mri.dst_prefix", "Destination prefix", base.DEC),
    mri_protocol = ProtoField.uint8("gist.mri.protocol", "Protocol", base.DEC),
    mri_ds = ProtoField.uint8("gist.mri.ds_field", "DS field", base.DEC, nil, 0xFC),
    mri_ds_rsv = ProtoField.uint8("gist.mri.ds_reserved", "Reserved", base.HEX, nil, 0x03),
    mri_fl_rsv = ProtoField.uint32("gist.mri.flow_label_reserved", "Reserved", base.HEX, nil, 0xFFF00000),
    mri_flow_label = ProtoField.uint32("gist.mri.flow_label", "Flow label", base.HEX, nil, 0x000FFFFF),
    mri_spi = ProtoField.uint32("gist.mri.spi", "SPI", base.HEX),
    mri_src_port = ProtoField.uint16("gist.mri.src_port", "Source port", base.DEC),
    mri_dst_port = ProtoField.uint16("gist.mri.dst_port", "Destination port", base.DEC),

    session_id = ProtoField.bytes("gist.session_id", "Session-ID"),

    nli_pi_len = ProtoField.uint8("gist.nli.pi_length", "PI-Length", base.DEC),
    nli_ttl = ProtoField.uint8("gist.nli.ip_ttl", "IP-TTL", base.DEC),
    nli_ipver = ProtoField.uint16("gist.nli.ipver", "IP version", base.DEC, nil, 0xF000),
    nli_rsv = ProtoField.uint16("gist.nli.reserved", "Reserved", base.HEX, nil, 0x0FFF),
    nli_validity = ProtoField.uint32("gist.nli.rs_validity", "Routing state validity time (ms)", base.DEC),
    nli_peer = ProtoField.bytes("gist.nli.peer_identity", "Peer identity"),
    nli_if6 = ProtoField.ipv6("gist.nli.if_ipv6", "Interface address"),
    nli_if4 = ProtoField.ipv4("gist.nli.if_ipv4", "Interface address"),

    sp_count = ProtoField.uint8("gist.sp.prof_count", "Prof-Count", base.DEC),
    sp_rsv = ProtoField.bytes("gist.sp.reserved", "Reserved"),
    sp_prot_count = ProtoField.uint8("gist.sp.prot_count", "Prot-Count", base.DEC),
    sp_protocol = ProtoField.uint8("gist.sp.protocol", "MA-Protocol-ID", base.DEC, GIST.MA_PROTO),

    scd_count = ProtoField.uint8("gist.scd.mpo_count", "MPO-Count", base.DEC),
    scd_rsv = ProtoField.bytes("gist.scd.reserved", "Reserved"),
    scd_hold = ProtoField.uint32("gist.scd.ma_hold_time", "MA-Hold-Time (ms)", base.DEC),
    mpo_protocol = ProtoField.uint8("gist.scd.mpo.protocol", "MA-Protocol-ID", base.DEC, GIST.MA_PROTO),
    mpo_profile = ProtoField.uint8("gist.scd.mpo.profile", "Profile", base.DEC),
    mpo_length = ProtoField.uint8("gist.scd.mpo.length", "Length (bytes of options data)", base.DEC),
    mpo_d = ProtoField.bool("gist.scd.mpo.d", "D (do not use)", 8, nil, 0x80),
    mpo_rsv = ProtoField.uint8("gist.scd.mpo.reserved", "Reserved", base.HEX, nil, 0x7F),
    mpo_data = ProtoField.bytes("gist.scd.mpo.data", "Options data"),
    mpo_port = ProtoField.uint16("gist.scd.mpo.port", "Port (Forwards-TCP)", base.DEC),

    query_cookie = ProtoField.bytes("gist.query_cookie", "Query-Cookie"),
    responder_cookie = ProtoField.bytes("gist.responder_cookie", "Responder-Cookie"),
    nslp_data = ProtoField.bytes("gist.nslp_data", "NSLP data"),
    hello_id = ProtoField.uint32("gist.hello_id", "Hello-ID", base.HEX),

    nat_mri_len = ProtoField.uint8("gist.nat.mri_length", "MRI-Length (32-bit words)", base.DEC),
    nat_type_count = ProtoField.uint8("gist.nat.type_count", "Type-Count", base.DEC),
    nat_count = ProtoField.uint8("gist.nat.nat_count", "NAT-Count", base.DEC),
    nat_rsv = ProtoField.uint8("gist.nat.reserved", "Reserved", base.HEX),
    nat_type = ProtoField.uint16("gist.nat.translated_type", "Translated object type", base.DEC, GIST.OBJ),
    nat_info_len = ProtoField.uint16("gist.nat.info_length", "Length of opaque information", base.DEC),
    nat_info = ProtoField.bytes("gist.nat.info", "Information replaced by NAT"),

    err_class = ProtoField.uint8("gist.err.class", "Error class", base.DEC, GIST.ERR_CLASS),
    err_code = ProtoField.uint16("gist.err.code", "Error code", base.DEC, GIST.ERR_CODE),
    err_subcode = ProtoField.uint8("gist.err.subcode", "Error subcode", base.DEC),
    err_flags = ProtoField.uint16("gist.err.flags", "Flags", base.HEX),
    err_s = ProtoField.bool("gist.err.s", "S (Session-ID present)", 16, nil, GIST.ERR_S),
    err_m = ProtoField.bool("gist.err.m", "M (MRI present)", 16, nil, GIST.ERR_M),
    err_c = ProtoField.bool("gist.err.c", "C (debugging comment present)", 16, nil, GIST.ERR_C),
    err_d = ProtoField.bool("gist.err.d", "D (sent in D-mode)", 16, nil, GIST.ERR_D),
    err_q = ProtoField.bool("gist.err.q", "Q (message in error was Q-mode)", 16, nil, GIST.ERR_Q),
    err_flags_rsv = ProtoField.uint16("gist.err.flags_reserved", "Reserved", base.HEX, nil, 0x07FF),
    err_mri_len = ProtoField.uint8("gist.err.mri_length", "MRI length (32-bit words)", base.DEC),
    err_info_count = ProtoField.uint8("gist.err.info_count", "Info count", base.DEC),
    err_session_id = ProtoField.bytes("gist.err.session_id", "Session-ID"),
    ai_type = ProtoField.uint16("gist.err.ai.type", "AI-Type", base.DEC, GIST.AI_TYPE),
    ai_len = ProtoField.uint16("gist.err.ai.length", "AI-Length (32-bit words)", base.DEC),
    ai_value = ProtoField.bytes("gist.err.ai.value", "AI-Value"),
    ai_calc_len = ProtoField.uint16("gist.err.ai.calculated_length", "Calculated length", base.DEC),
    ai_mtu = ProtoField.uint16("gist.err.ai.mtu", "Link MTU", base.DEC),
    ai_obj_type = ProtoField.uint16("gist.err.ai.object_type", "Object type", base.DEC, GIST.OBJ),
    ai_real_len = ProtoField.uint16("gist.err.ai.real_length", "Real object length", base.DEC, nil, 0x0FFF),
    ai_offset = ProtoField.uint16("gist.err.ai.offset", "Offset", base.DEC),
    err_comment = ProtoField.string("gist.err.comment", "Debugging comment"),
}
local ge = register(gist, gf, "GIST")
local need = needs(ge)
local padding = paddings(gf.padding, ge)
local GIST_OBJECT = { proto = gist, experts = ge,
                      fields = { ab = gf.obj_ab, rsv1 = gf.obj_rsv1, type = gf.obj_type,
                                 rsv2 = gf.obj_rsv2, len = gf.obj_len },
                      label = function(t) return name_of(GIST.OBJ, t, "Object " .. t) end }

-- the NSLP sub-dissector table, keyed by NSLPID
local nslp_table = DissectorTable.new("gist.nslpid", "GIST NSLPID", ftypes.UINT16, base.DEC, gist)
local data_dissector = Dissector.get("data")

---------------------------------------------------------------------------- GIST objects
-- Each object decoder gets (value range, subtree, context) and returns nothing; it flags
-- truncation itself through need(). `ctx` carries pinfo, the root tree and message facts.

local function dissect_mri(r, tree, item)
    if not need(r, 0, 4, item, "MRI header") then return end
    local mrm = r(0, 1):uint()
    tree:add(gf.mri_mrm, r(0, 1))
    tree:add(gf.mri_n, r(1, 1))
    tree:add(gf.mri_rsv, r(1, 1))
    if bits(r(1, 1):uint(), 0, 7) ~= 0 then
        item:add_proto_expert_info(ge.protocol, "Reserved MRI bits set")
    end
    local word = r(2, 2):uint()
    local ipver = bits(word, 12, 4)
    tree:add(gf.mri_ipver, r(2, 2))
    if ipver ~= 4 and ipver ~= 6 then
        item:add_proto_expert_info(ge.malformed, "MRI IP version " .. ipver)
        return
    end
    local alen = ipver == 4 and 4 or 16
    local fsrc = ipver == 4 and gf.mri_src4 or gf.mri_src6
    local fdst = ipver == 4 and gf.mri_dst4 or gf.mri_dst6
    if mrm == 1 then            -- loose-end (A.3.1.2): IP-Ver, D, addresses
        tree:add(gf.mri_le_d, r(2, 2))
        tree:add(gf.mri_le_rsv, r(2, 2))
        if not need(r, 4, 2 * alen, item, "MRI addresses") then return end
        tree:add(fsrc, r(4, alen))
        tree:add(fdst, r(4 + alen, alen))
        item:append_text(": loose-end " .. addr_text(r(4, alen)) .. " -> " .. addr_text(r(4 + alen, alen)))
        return 4 + 2 * alen
    elseif mrm ~= 0 then
        item:add_proto_expert_info(ge.unknown, "Unknown message routing method " .. mrm)
        tree:add(gf.obj_value, r(4))
        return r:len()
    end
    for _, f in ipairs({ gf.mri_p, gf.mri_t, gf.mri_f, gf.mri_s, gf.mri_a, gf.mri_b, gf.mri_d,
                         gf.mri_flags_rsv }) do
        tree:add(f, r(2, 2))
    end
    if bits(word, 0, 5) ~= 0 then
        item:add_proto_expert_info(ge.protocol, "Reserved path-coupled MRI bits set")
    end
    if not need(r, 4, 2 * alen + 4, item, "path-coupled MRI") then return end
    local src, dst = addr_text(r(4, alen)), addr_text(r(4 + alen, alen))
    tree:add(fsrc, r(4, alen))
    tree:add(fdst, r(4 + alen, alen))
    local off = 4 + 2 * alen
    tree:add(gf.mri_src_prefix, r(off, 1))
    tree:add(gf.mri_dst_prefix, r(off + 1, 1))
    tree:add(gf.mri_protocol, r(off + 2, 1))
    tree:add(gf.mri_ds, r(off + 3, 1))
    tree:add(gf.mri_ds_rsv, r(off + 3, 1))
    local summary = ": " .. src .. " -> " .. dst
    if has(word, GIST.MRI_P) then summary = summary .. " proto " .. r(off + 2, 1):uint() end
    off = off + 4
    if has(word, GIST.MRI_F) then
        if ipver == 4 then item:add_proto_expert_info(ge.protocol, "Flow label flag in an IPv4 MRI") end
        if not need(r, off, 4, item, "MRI flow label") then return end
        tree:add(gf.mri_fl_rsv, r(off, 4))
        tree:add(gf.mri_flow_label, r(off, 4))
        off = off + 4
    end
    if has(word, GIST.MRI_S) then
        if not need(r, off, 4, item, "MRI SPI") then return end
        tree:add(gf.mri_spi, r(off, 4))
        off = off + 4
    end
    if has(word, GIST.MRI_A) or has(word, GIST.MRI_B) then
        if not need(r, off, 4, item, "MRI ports") then return end
        if has(word, GIST.MRI_A) then
            tree:add(gf.mri_src_port, r(off, 2))
            summary = summary .. " sport " .. r(off, 2):uint()
        end
        if has(word, GIST.MRI_B) then
            tree:add(gf.mri_dst_port, r(off + 2, 2))
            summary = summary .. " dport " .. r(off + 2, 2):uint()
        end
        off = off + 4
    end
    if has(word, GIST.MRI_D) then summary = summary .. " (upstream)" end
    item:append_text(summary)
    return off
end

local function dissect_nli(r, tree, item)
    if not need(r, 0, 8, item, "NLI header") then return end
    local pi_len = r(0, 1):uint()
    tree:add(gf.nli_pi_len, r(0, 1))
    tree:add(gf.nli_ttl, r(1, 1))
    tree:add(gf.nli_ipver, r(2, 2))
    tree:add(gf.nli_rsv, r(2, 2))
    tree:add(gf.nli_validity, r(4, 4))
    local ipver = bits(r(2, 2):uint(), 12, 4)
    if ipver ~= 4 and ipver ~= 6 then
        item:add_proto_expert_info(ge.malformed, "NLI IP version " .. ipver)
        return
    end
    local padded = pi_len + pad4(pi_len)
    if not need(r, 8, padded, item, "NLI peer identity") then return end
    if pi_len > 0 then tree:add(gf.nli_peer, r(8, pi_len)) end
    if pad4(pi_len) > 0 then padding(r(8 + pi_len, pad4(pi_len)), tree, item) end
    local off = 8 + padded
    local alen = ipver == 4 and 4 or 16
    if not need(r, off, alen, item, "NLI interface address") then return end
    tree:add(ipver == 4 and gf.nli_if4 or gf.nli_if6, r(off, alen))
    item:append_text(": " .. addr_text(r(off, alen)))
    return off + alen
end

local function dissect_stack_proposal(r, tree, item)
    if not need(r, 0, 4, item, "Stack-Proposal header") then return end
    local count = r(0, 1):uint()
    tree:add(gf.sp_count, r(0, 1))
    tree:add(gf.sp_rsv, r(1, 3))
    local off = 4
    for i = 1, count do
        if not need(r, off, 1, item, "Stack-Proposal profile") then return end
        local n = r(off, 1):uint()
        local size = 1 + n + pad4(1 + n)
        if not need(r, off, size, item, "Stack-Proposal profile") then return end
        local sub = tree:add(gist, r(off, size), "Profile " .. i)
        sub:add(gf.sp_prot_count, r(off, 1))
        for k = 1, n do sub:add(gf.sp_protocol, r(off + k, 1)) end
        if pad4(1 + n) > 0 then padding(r(off + 1 + n, pad4(1 + n)), sub, item) end
        off = off + size
    end
    return off
end

local function dissect_stack_config(r, tree, item)
    if not need(r, 0, 8, item, "Stack-Configuration-Data header") then return end
    local count = r(0, 1):uint()
    tree:add(gf.scd_count, r(0, 1))
    tree:add(gf.scd_rsv, r(1, 3))
    tree:add(gf.scd_hold, r(4, 4))
    local off = 8
    for i = 1, count do
        if not need(r, off, 4, item, "MA-protocol-options") then return end
        local len = r(off + 2, 1):uint()
        local size = 4 + len + pad4(len)
        if not need(r, off, size, item, "MA-protocol-options data") then return end
        local sub = tree:add(gist, r(off, size), "MA-protocol-options " .. i .. ": " ..
                             name_of(GIST.MA_PROTO, r(off, 1):uint()))
        sub:add(gf.mpo_protocol, r(off, 1))
        sub:add(gf.mpo_profile, r(off + 1, 1))
        sub:add(gf.mpo_length, r(off + 2, 1))
        sub:add(gf.mpo_d, r(off + 3, 1))
        sub:add(gf.mpo_rsv, r(off + 3, 1))
        if len > 0 then sub:add(gf.mpo_data, r(off + 4, len)) end
        if len == 2 and r(off, 1):uint() == GIST.MA_TCP then sub:add(gf.mpo_port, r(off + 4, 2)) end
        if pad4(len) > 0 then padding(r(off + 4 + len, pad4(len)), sub, item) end
        off = off + size
    end
    return off
end

local function dissect_nat_traversal(r, tree, item)
    if not need(r, 0, 4, item, "NAT-Traversal header") then return end
    local mri_words, types, nats = r(0, 1):uint(), r(1, 1):uint(), r(2, 1):uint()
    tree:add(gf.nat_mri_len, r(0, 1))
    tree:add(gf.nat_type_count, r(1, 1))
    tree:add(gf.nat_count, r(2, 1))
    tree:add(gf.nat_rsv, r(3, 1))
    local off = 4
    if not need(r, off, mri_words * 4, item, "original MRI") then return end
    if mri_words > 0 then
        local sub = tree:add(gist, r(off, mri_words * 4), "Original MRI")
        dissect_mri(r(off, mri_words * 4), sub, sub)
    end
    off = off + mri_words * 4
    local tsize = 2 * types + pad4(2 * types)
    if not need(r, off, tsize, item, "list of translated objects") then return end
    for k = 0, types - 1 do tree:add(gf.nat_type, r(off + 2 * k, 2)) end
    if pad4(2 * types) > 0 then padding(r(off + 2 * types, pad4(2 * types)), tree, item) end
    off = off + tsize
    for i = 1, nats do
        if not need(r, off, 2, item, "NAT information length") then return end
        local len = r(off, 2):uint()
        local size = 2 + len + pad4(2 + len)
        if not need(r, off, size, item, "NAT information") then return end
        local sub = tree:add(gist, r(off, size), "NAT #" .. i)
        sub:add(gf.nat_info_len, r(off, 2))
        if len > 0 then sub:add(gf.nat_info, r(off + 2, len)) end
        if pad4(2 + len) > 0 then padding(r(off + 2 + len, pad4(2 + len)), sub, item) end
        off = off + size
    end
    return off
end

local dissect_common_header   -- forward declaration (the Error object quotes a header)

local function dissect_error(r, tree, item)
    if not need(r, 0, 16, item, "Error object header") then return end
    local class, code, subcode = r(0, 1):uint(), r(1, 2):uint(), r(3, 1):uint()
    local flags, mri_words, count = r(4, 2):uint(), r(6, 1):uint(), r(7, 1):uint()
    tree:add(gf.err_class, r(0, 1))
    tree:add(gf.err_code, r(1, 2))
    local sub_names = GIST.ERR_SUBCODE[code]
    local si = tree:add(gf.err_subcode, r(3, 1))
    if sub_names and sub_names[subcode] then si:append_text(" (" .. sub_names[subcode] .. ")") end
    local fi = tree:add(gf.err_flags, r(4, 2))
    for _, f in ipairs({ gf.err_s, gf.err_m, gf.err_c, gf.err_d, gf.err_q, gf.err_flags_rsv }) do
        fi:add(f, r(4, 2))
    end
    tree:add(gf.err_mri_len, r(6, 1))
    tree:add(gf.err_info_count, r(7, 1))
    item:append_text(string.format(": %s, %s", name_of(GIST.ERR_CLASS, class),
                                   name_of(GIST.ERR_CODE, code)))
    local hsub = tree:add(gist, r(8, 8), "Common header of the message in error")
    dissect_common_header(r(8, 8), hsub, nil, false)
    local off = 16
    if has(flags, GIST.ERR_S) then
        if not need(r, off, GIST.SESSION_ID_LEN, item, "Error Session-ID") then return end
        tree:add(gf.err_session_id, r(off, GIST.SESSION_ID_LEN))
        off = off + GIST.SESSION_ID_LEN
    end
    if has(flags, GIST.ERR_M) then
        if not need(r, off, mri_words * 4, item, "Error MRI") then return end
        if mri_words > 0 then
            local sub = tree:add(gist, r(off, mri_words * 4), "MRI of the message in error")
            dissect_mri(r(off, mri_words * 4), sub, sub)
        end
        off = off + mri_words * 4
    elseif mri_words > 0 then
        item:add_proto_expert_info(ge.protocol, "MRI length without the M flag")
    end
    for i = 1, count do
        if not need(r, off, 4, item, "Additional Information header") then return end
        local ai, words = r(off, 2):uint(), r(off + 2, 2):uint()
        if not need(r, off, 4 + words * 4, item, "Additional Information value") then return end
        local sub = tree:add(gist, r(off, 4 + words * 4), "Additional Information: " ..
                             name_of(GIST.AI_TYPE, ai))
        sub:add(gf.ai_type, r(off, 2))
        sub:add(gf.ai_len, r(off + 2, 2))
        if words > 0 then
            local v = r(off + 4, words * 4)
            if ai == 1 then sub:add(gf.ai_calc_len, v(0, 2))
            elseif ai == 2 then sub:add(gf.ai_mtu, v(0, 2))
            elseif ai == 3 then sub:add(gf.ai_obj_type, v(0, 2))
            elseif ai == 4 then
                sub:add(gf.ai_real_len, v(0, 2))
                sub:add(gf.ai_offset, v(2, 2))
                if words > 1 then sub:add(gf.ai_value, v(4)) end
            else sub:add(gf.ai_value, v) end
        end
        off = off + 4 + words * 4
    end
    if has(flags, GIST.ERR_C) then
        local rest = r:len() - off
        if rest <= 0 then
            item:add_proto_expert_info(ge.malformed, "Debugging comment flag without a comment")
            return off
        end
        local raw = r(off, rest)
        local nul = nil
        for i = 0, rest - 1 do
            if raw(i, 1):uint() == 0 then nul = i break end
        end
        if nul == nil then
            item:add_proto_expert_info(ge.malformed, "Debugging comment without a terminating NUL")
            return off
        end
        tree:add(gf.err_comment, raw(0, nul + 1), raw(0, nul + 1):stringz(ENC_UTF_8))
        off = off + rest
    end
    return off
end

-- the value decoders by object type; each returns how many bytes it used (nil: stopped)
local GIST_DECODERS = {
    [0] = dissect_mri,
    [1] = function(r, tree, item)
        tree:add(gf.session_id, r)
        if r:len() ~= GIST.SESSION_ID_LEN then
            item:add_proto_expert_info(ge.malformed, string.format(
                "Session-ID of %d bytes, expected %d", r:len(), GIST.SESSION_ID_LEN))
        end
        return r:len()
    end,
    [2] = dissect_nli,
    [3] = dissect_stack_proposal,
    [4] = dissect_stack_config,
    [5] = function(r, tree) tree:add(gf.query_cookie, r) return r:len() end,
    [6] = function(r, tree) tree:add(gf.responder_cookie, r) return r:len() end,
    [7] = dissect_nat_traversal,
    [9] = dissect_error,
    [10] = function(r, tree, item)
        if not need(r, 0, 4, item, "Hello-ID") then return end
        tree:add(gf.hello_id, r(0, 4))
        item:append_text(string.format(": 0x%08x", r(0, 4):uint()))
        return 4
    end,
}

---------------------------------------------------------------------------- GIST message
-- Decodes an 8-byte common header in `r` into `tree`; returns its fields.
dissect_common_header = function(r, tree, item, is_q)
    local h = { version = r(0, 1):uint(), hops = r(1, 1):uint(), words = r(2, 2):uint(),
                nslpid = r(4, 2):uint(), type_byte = r(6, 1):uint(), flags = r(7, 1):uint() }
    h.type = bits(h.type_byte, 0, 7)
    h.c = has(h.type_byte, GIST.FLAG_C)
    tree:add(gf.version, r(0, 1))
    tree:add(gf.hops, r(1, 1))
    tree:add(gf.length, r(2, 2))
    tree:add(gf.nslpid, r(4, 2))
    tree:add(gf.c, r(6, 1))
    tree:add(gf.type, r(6, 1))
    local fi = tree:add(gf.flags, r(7, 1))
    fi:add(gf.flag_s, r(7, 1))
    fi:add(gf.flag_r, r(7, 1))
    fi:add(gf.flag_e, r(7, 1))
    fi:add(gf.flag_rsv, r(7, 1))
    if item then
        if h.version ~= GIST.VERSION then
            item:add_proto_expert_info(ge.protocol, "Unknown GIST version " .. h.version)
        end
        if GIST.MSG[h.type] == nil then
            item:add_proto_expert_info(ge.unknown, "Unknown GIST message type " .. h.type)
        end
        if bits(h.flags, 0, 5) ~= 0 then
            item:add_proto_expert_info(ge.protocol, "Reserved common header bits set")
        end
        if is_q ~= nil and h.c ~= is_q then
            item:add_proto_expert_info(ge.protocol, "C flag and magic number disagree")
        end
    end
    return h
end

local function check_grammar(msg_type, seen_types, item)
    local grammar = GIST.GRAMMAR[msg_type]
    if grammar == nil then return end
    local present = {}
    for _, t in ipairs(seen_types) do
        if present[t] then
            item:add_proto_expert_info(ge.protocol, "Duplicate " .. name_of(GIST.OBJ, t))
        end
        present[t] = true
    end
    local allowed = {}
    for _, g in ipairs(grammar) do
        allowed[g[1]] = true
        if g[2] and not present[g[1]] then
            item:add_proto_expert_info(ge.protocol, GIST.MSG[msg_type] .. " lacks " .. GIST.OBJ[g[1]])
        end
    end
    for t, _ in pairs(present) do
        if GIST.OBJ[t] and not allowed[t] then
            item:add_proto_expert_info(ge.protocol, GIST.OBJ[t] .. " not allowed in " .. GIST.MSG[msg_type])
        end
    end
end

-- One GIST message in `tvb` (the whole buffer). `mode` is "Q"/"D" guessed from the magic
-- number for UDP, or "C" for a message taken from a TCP stream.
local function dissect_gist_message(tvb, pinfo, tree, mode)
    local total = tvb:len()
    local root = tree:add(gist, tvb())
    pinfo.cols.protocol:set("GIST")
    local off = 0
    local is_q = nil
    if mode ~= "C" then
        is_q = total >= 4 and tvb(0, 4):uint() == GIST.MAGIC
        mode = is_q and "Q" or "D"
    end
    root:add(gf.mode, mode == "Q" and "Q-mode" or (mode == "D" and "D-mode" or "C-mode")):set_generated()
    if is_q then
        root:add(gf.magic, tvb(0, 4))
        off = 4
    end
    if total - off < GIST.HEADER_LEN then
        root:add_proto_expert_info(ge.malformed, string.format(
            "%d bytes is shorter than the GIST common header", total - off))
        pinfo.cols.info:set("GIST (truncated)")
        return
    end
    local hdr = root:add(gist, tvb(off, GIST.HEADER_LEN), "Common header")
    local h = dissect_common_header(tvb(off, GIST.HEADER_LEN), hdr, root, is_q)
    local mname = name_of(GIST.MSG, h.type)
    root:append_text(string.format(", %s (%s), NSLPID %d", mname, mode .. "-mode", h.nslpid))
    pinfo.cols.info:set(string.format("%s (%s-mode) NSLPID %d hops %d", mname, mode, h.nslpid, h.hops))
    off = off + GIST.HEADER_LEN
    local body = total - off
    local declared = h.words * 4
    if declared ~= body then
        root:add_proto_expert_info(ge.malformed, string.format(
            "Message length %d words (%d bytes) but %d bytes follow the header",
            h.words, declared, body))
    end
    local limit = off + math.min(declared, body)
    local seen = {}
    local nslp_range = nil
    while off < limit do
        if limit - off < 4 then
            root:add_tvb_expert_info(ge.malformed, tvb(off, limit - off), "Truncated object header")
            break
        end
        local o = add_object(tvb, off, limit, root, GIST_OBJECT)
        local otype, avail = o.type, o.avail
        seen[#seen + 1] = otype
        local decoder = GIST_DECODERS[otype]
        local vr = avail > 0 and tvb(off + 4, avail) or nil
        if otype == 8 then
            if vr then
                o.tree:add(gf.nslp_data, vr)
                nslp_range = { range = vr, tree = o.tree }
            end
        elseif decoder and vr then
            decode_value(decoder, o, vr, ge)
        elseif decoder then
            o.tree:add_proto_expert_info(ge.malformed, "Empty " .. name_of(GIST.OBJ, otype))
        else
            if o.ab == 0 then
                o.tree:add_proto_expert_info(ge.unknown, "Unknown mandatory object type " .. otype)
            end
            if vr then o.tree:add(gf.obj_value, vr) end
        end
        off = off + 4 + avail
    end
    if GIST.MSG[h.type] then check_grammar(h.type, seen, root) end
    if nslp_range then
        local sub = nslp_table:get_dissector(h.nslpid)
        local ntvb = nslp_range.range:tvb()
        if sub then
            sub:call(ntvb, pinfo, nslp_range.tree)
        else
            data_dissector:call(ntvb, pinfo, nslp_range.tree)
        end
    end
end

function gist.dissector(tvb, pinfo, tree)
    dissect_gist_message(tvb, pinfo, tree, nil)
    return tvb:len()
end

-- C-mode: messages back to back on a TCP stream, each a common header and its objects
local function cmode_pdu_len(tvb, pinfo, offset)
    return GIST.HEADER_LEN + tvb(offset + 2, 2):uint() * 4
end

local function cmode_pdu(tvb, pinfo, tree)
    dissect_gist_message(tvb, pinfo, tree, "C")
    return tvb:len()
end

function gist_cmode.dissector(tvb, pinfo, tree)
    dissect_tcp_pdus(tvb, tree, GIST.HEADER_LEN, cmode_pdu_len, cmode_pdu)
    return tvb:len()
end

DissectorTable.get("udp.port"):add(GIST.UDP_PORT, gist)
DissectorTable.get("tcp.port"):add_for_decode_as(gist_cmode)

---------------------------------------------------------------------------- NATFW fields
local natfw = Proto("natfw", "NAT/Firewall NSLP (RFC 5973)")

local nf = {
    msg_type = ProtoField.uint8("natfw.msg_type", "Message type", base.HEX, NATFW.MSG),
    flags = ProtoField.uint8("natfw.flags", "Flags", base.HEX),
    flag_p = ProtoField.bool("natfw.flags.p", "P (proxy mode)", 8, nil, NATFW.FLAG_P),
    flag_rsv = ProtoField.uint8("natfw.flags.reserved", "Reserved", base.HEX, nil, 0x7F),
    reserved = ProtoField.uint16("natfw.reserved", "Reserved", base.HEX),

    obj_ab = ProtoField.uint16("natfw.obj.ab", "A/B (extensibility)", base.DEC, NATFW.AB, 0xC000),
    obj_rsv1 = ProtoField.uint16("natfw.obj.reserved", "Reserved", base.HEX, nil, 0x3000),
    obj_type = ProtoField.uint16("natfw.obj.type", "Object type", base.HEX, NATFW.OBJ, 0x0FFF),
    obj_rsv2 = ProtoField.uint16("natfw.obj.reserved2", "Reserved", base.HEX, nil, 0xF000),
    obj_len = ProtoField.uint16("natfw.obj.length", "Length (32-bit words)", base.DEC, nil, 0x0FFF),
    obj_value = ProtoField.bytes("natfw.obj.value", "Value"),
    padding = ProtoField.bytes("natfw.padding", "Padding"),

    lifetime = ProtoField.uint32("natfw.lifetime", "Lifetime (s)", base.DEC),
    ext_port = ProtoField.uint16("natfw.ext.port", "Port", base.DEC),
    ext_protocol = ProtoField.uint8("natfw.ext.protocol", "Protocol", base.DEC),
    ext_rsv = ProtoField.uint8("natfw.ext.reserved", "Reserved", base.HEX),
    ext_ipv4 = ProtoField.ipv4("natfw.ext.ipv4", "IPv4 address"),
    efi_action = ProtoField.uint16("natfw.efi.action", "Rule action", base.HEX, NATFW.EFI_ACTION),
    efi_sub_ports = ProtoField.uint16("natfw.efi.sub_ports", "Sub_ports", base.DEC),
    info_rsv1 = ProtoField.uint8("natfw.info.reserved", "Reserved", base.HEX, nil, 0xF0),
    info_class = ProtoField.uint8("natfw.info.class", "Severity class", base.HEX, NATFW.SEVERITY, 0x0F),
    info_code = ProtoField.uint8("natfw.info.code", "Response code", base.HEX),
    info_rsv2 = ProtoField.uint16("natfw.info.reserved2", "Reserved", base.HEX, nil, 0xF000),
    info_obj = ProtoField.uint16("natfw.info.object_type", "Object type", base.HEX, NATFW.OBJ, 0x0FFF),
    info_meaning = ProtoField.string("natfw.info.meaning", "Meaning"),
    nonce = ProtoField.uint32("natfw.nonce", "Nonce", base.HEX),
    msn = ProtoField.uint32("natfw.msn", "Message sequence number", base.DEC),
    dt_flags = ProtoField.uint8("natfw.dtinfo.flags", "Flags", base.HEX),
    dt_i = ProtoField.bool("natfw.dtinfo.i", "I (IPsec SPI present)", 8, nil, NATFW.DT_I),
    dt_p = ProtoField.bool("natfw.dtinfo.p", "P (ports present)", 8, nil, NATFW.DT_P),
    dt_s = ProtoField.bool("natfw.dtinfo.s", "S (sender address present)", 8, nil, NATFW.DT_S),
    dt_flags_rsv = ProtoField.uint8("natfw.dtinfo.flags_reserved", "Reserved", base.HEX, nil, 0x1F),
    dt_prefix = ProtoField.uint8("natfw.dtinfo.sender_prefix", "Sender prefix", base.DEC),
    dt_protocol = ProtoField.uint8("natfw.dtinfo.protocol", "Protocol", base.DEC),
    dt_ds = ProtoField.uint8("natfw.dtinfo.ds_field", "DS-field", base.DEC, nil, 0xFC),
    dt_rsv = ProtoField.uint8("natfw.dtinfo.reserved", "Reserved", base.HEX, nil, 0x03),
    dt_rport = ProtoField.uint16("natfw.dtinfo.receiver_port", "Receiver port", base.DEC),
    dt_sport = ProtoField.uint16("natfw.dtinfo.sender_port", "Sender port", base.DEC),
    dt_spi = ProtoField.uint32("natfw.dtinfo.spi", "IPsec SPI", base.HEX),
    dt_sender4 = ProtoField.ipv4("natfw.dtinfo.sender_ipv4", "Data sender address"),
    dt_sender6 = ProtoField.ipv6("natfw.dtinfo.sender_ipv6", "Data sender address"),
    icmp_count = ProtoField.uint8("natfw.icmp.count", "Count", base.DEC),
    icmp_type = ProtoField.uint8("natfw.icmp.type", "ICMP type", base.DEC),

    auth_len = ProtoField.uint16("natfw.auth.length", "Attribute length", base.DEC),
    auth_xtype = ProtoField.uint8("natfw.auth.xtype", "X-Type", base.DEC, NATFW.X_TYPE),
    auth_subtype = ProtoField.uint8("natfw.auth.subtype", "SubType", base.DEC),
    auth_value = ProtoField.bytes("natfw.auth.value", "Value"),
    auth_fqdn = ProtoField.string("natfw.auth.fqdn", "Authorizing entity (FQDN)"),
    auth_transform_rsv = ProtoField.uint16("natfw.auth.transform_reserved", "Reserved", base.HEX),
    auth_transform = ProtoField.uint16("natfw.auth.transform", "Transform ID", base.DEC, NATFW.TRANSFORM),
    auth_session_id = ProtoField.bytes("natfw.auth.session_id", "Session ID"),
    auth_ipv4 = ProtoField.ipv4("natfw.auth.ipv4", "IPv4 address"),
    auth_ipv6 = ProtoField.ipv6("natfw.auth.ipv6", "IPv6 address"),
    auth_port = ProtoField.uint16("natfw.auth.port", "Port", base.DEC),
    auth_spi = ProtoField.uint32("natfw.auth.spi", "SPI", base.HEX),
    flow_protocol = ProtoField.uint8("natfw.auth.flow.protocol", "Protocol (0: any)", base.DEC),
    flow_plen = ProtoField.uint8("natfw.auth.flow.prefix_length", "Prefix length", base.DEC),
    flow_port = ProtoField.uint16("natfw.auth.flow.port", "Port (0: any)", base.DEC),
    flow_prefix = ProtoField.ipv6("natfw.auth.flow.prefix", "Destination prefix"),
    auth_time = ProtoField.absolute_time("natfw.auth.time", "Time", base.UTC),
    auth_ntp = ProtoField.uint32("natfw.auth.ntp_seconds", "NTP seconds", base.DEC),
    auth_obj_count = ProtoField.uint16("natfw.auth.object_count", "Object count", base.DEC),
    auth_obj_type = ProtoField.uint16("natfw.auth.object_type", "NSLP object type", base.HEX, NATFW.OBJ, 0x0FFF),
    auth_key_id = ProtoField.uint32("natfw.auth.key_id", "Key-ID", base.DEC),
    auth_hmac = ProtoField.bytes("natfw.auth.hmac", "Authentication data (HMAC)"),

    mip6_kind = ProtoField.uint8("natfw.mip6.kind", "Kind", base.DEC, NATFW.MIP6_KIND),
    mip6_mh_type = ProtoField.uint8("natfw.mip6.mh_type", "MH type", base.DEC, NATFW.MH_TYPE),
    mip6_rsv = ProtoField.uint16("natfw.mip6.reserved", "Reserved", base.HEX),
    mip6_hoa = ProtoField.ipv6("natfw.mip6.hoa", "Home address"),
}
local ne = register(natfw, nf, "NATFW NSLP")
local nneed = needs(ne)
local npadding = paddings(nf.padding, ne)
local NATFW_OBJECT = { proto = natfw, experts = ne,
                       fields = { ab = nf.obj_ab, rsv1 = nf.obj_rsv1, type = nf.obj_type,
                                  rsv2 = nf.obj_rsv2, len = nf.obj_len },
                       label = function(t) return name_of(NATFW.OBJ, t, string.format("Object 0x%03x", t)) end }

---------------------------------------------------------------------------- SESSION_AUTH
local function ntp_time(r)
    local secs, frac = r(0, 4):uint(), r(4, 4):uint()
    return NSTime(secs - NATFW.NTP_UNIX_OFFSET, math.floor(frac * 1e9 / 2 ^ 32))
end

local function dissect_auth_value(x, sub, v, tree, item)
    local n = v and v:len() or 0
    if x == NATFW.X_AUTH_ENT_ID and sub == NATFW.SUB_FQDN and n > 0 then
        tree:add(nf.auth_fqdn, v, v:string(ENC_ASCII))
        item:append_text(": " .. v:string(ENC_ASCII))
    elseif x == NATFW.X_AUTH_ENT_ID and sub == NATFW.SUB_HMAC_SIGNED and n == 4 then
        tree:add(nf.auth_transform_rsv, v(0, 2))
        tree:add(nf.auth_transform, v(2, 2))
        item:append_text(": HMAC_SIGNED, transform " .. name_of(NATFW.TRANSFORM, v(2, 2):uint()))
    elseif x == NATFW.X_SESSION_ID and n > 0 then
        tree:add(nf.auth_session_id, v)
    elseif (x == NATFW.X_SOURCE_ADDR or x == NATFW.X_DEST_ADDR) and sub == NATFW.SUB_IPV6 and n == 16 then
        tree:add(nf.auth_ipv6, v)
        item:append_text(": " .. tostring(v:ipv6()))
    elseif (x == NATFW.X_SOURCE_ADDR or x == NATFW.X_DEST_ADDR) and sub == NATFW.SUB_IPV4 and n == 4 then
        tree:add(nf.auth_ipv4, v)
        item:append_text(": " .. tostring(v:ipv4()))
    elseif (x == NATFW.X_SOURCE_ADDR or x == NATFW.X_DEST_ADDR) and (sub == 3 or sub == 4) and n % 2 == 0 and n > 0 then
        for i = 0, n - 2, 2 do tree:add(nf.auth_port, v(i, 2)) end
    elseif (x == NATFW.X_SOURCE_ADDR or x == NATFW.X_DEST_ADDR) and sub == 5 and n == 4 then
        tree:add(nf.auth_spi, v)
    elseif x == NATFW.X_DEST_ADDR and sub == NATFW.SUB_FLOW and n == 20 then
        tree:add(nf.flow_protocol, v(0, 1))
        tree:add(nf.flow_plen, v(1, 1))
        tree:add(nf.flow_port, v(2, 2))
        tree:add(nf.flow_prefix, v(4, 16))
        item:append_text(string.format(": proto %d to %s/%d port %d", v(0, 1):uint(),
                                       tostring(v(4, 16):ipv6()), v(1, 1):uint(), v(2, 2):uint()))
    elseif (x == NATFW.X_START_TIME or x == NATFW.X_END_TIME) and sub == NATFW.SUB_NTP and n == 8 then
        local t = ntp_time(v)
        tree:add(nf.auth_time, v, t)
        tree:add(nf.auth_ntp, v(0, 4))
        item:append_text(": " .. os.date("!%Y-%m-%d %H:%M:%S", t.secs) .. " UTC")
    elseif x == NATFW.X_NSLP_OBJECT_LIST and n >= 2 then
        local count = v(0, 2):uint()
        tree:add(nf.auth_obj_count, v(0, 2))
        if not nneed(v, 2, 2 * count, item, "NSLP_OBJECT_LIST") then return end
        for i = 0, count - 1 do tree:add(nf.auth_obj_type, v(2 + 2 * i, 2)) end
        if n > 2 + 2 * count then
            item:add_proto_expert_info(ne.malformed, "Trailing bytes in NSLP_OBJECT_LIST")
        end
    elseif x == NATFW.X_AUTHENTICATION_DATA and n >= 4 then
        tree:add(nf.auth_key_id, v(0, 4))
        if n > 4 then tree:add(nf.auth_hmac, v(4)) end
        item:append_text(": Key-ID " .. v(0, 4):uint())
    else
        if n > 0 then tree:add(nf.auth_value, v) end
        if NATFW.X_TYPE[x] and x ~= NATFW.X_SESSION_ID then
            local subs = NATFW.SUB_TYPE[x]
            if subs and subs[sub] == nil then
                item:add_proto_expert_info(ne.unknown, string.format("Unknown SubType %d of %s", sub, NATFW.X_TYPE[x]))
            elseif subs == nil or n == 0 or sub == NATFW.SUB_FQDN or sub == NATFW.SUB_IPV4
                    or sub == NATFW.SUB_IPV6 or sub == NATFW.SUB_NTP then
                item:add_proto_expert_info(ne.malformed, string.format(
                    "%s value of %d bytes does not fit its SubType", NATFW.X_TYPE[x], n))
            end
        elseif NATFW.X_TYPE[x] == nil then
            item:add_proto_expert_info(ne.unknown, "Unknown X-Type " .. x)
        end
    end
end

local function dissect_session_auth(r, tree, item)
    local off = 0
    local i = 0
    while off < r:len() do
        i = i + 1
        if not nneed(r, off, 4, item, "SESSION_AUTH attribute header") then return end
        local alen, x, sub = r(off, 2):uint(), r(off + 2, 1):uint(), r(off + 3, 1):uint()
        if alen < 4 then
            item:add_proto_expert_info(ne.malformed, "SESSION_AUTH attribute length " .. alen)
            return
        end
        local size = alen + pad4(alen)
        if not nneed(r, off, size, item, "SESSION_AUTH attribute") then return end
        local subs = NATFW.SUB_TYPE[x]
        local label = name_of(NATFW.X_TYPE, x, "X-Type " .. x)
        if subs and subs[sub] then label = label .. "/" .. subs[sub] end
        local at = tree:add(natfw, r(off, size), label)
        at:add(nf.auth_len, r(off, 2))
        at:add(nf.auth_xtype, r(off + 2, 1))
        local si = at:add(nf.auth_subtype, r(off + 3, 1))
        if subs and subs[sub] then si:append_text(" (" .. subs[sub] .. ")") end
        local v = alen > 4 and r(off + 4, alen - 4) or nil
        dissect_auth_value(x, sub, v, at, at)
        if pad4(alen) > 0 then npadding(r(off + alen, pad4(alen)), at, at) end
        off = off + size
    end
    item:append_text(string.format(": %d attributes", i))
    return off
end

---------------------------------------------------------------------------- NATFW objects
local function dissect_info(r, tree, item, msg_item)
    local class, code = bits(r(0, 1):uint(), 0, 4), r(1, 1):uint()
    tree:add(nf.info_rsv1, r(0, 1))
    tree:add(nf.info_class, r(0, 1))
    tree:add(nf.info_code, r(1, 1))
    tree:add(nf.info_rsv2, r(2, 2))
    tree:add(nf.info_obj, r(2, 2))
    if bits(r(0, 1):uint(), 4, 4) ~= 0 or bits(r(2, 2):uint(), 12, 4) ~= 0 then
        item:add_proto_expert_info(ne.protocol, "Reserved bits set in the information code")
    end
    local codes = NATFW.INFO[class]
    local meaning = codes and codes[code]
    if meaning then
        tree:add(nf.info_meaning, r(0, 2), meaning):set_generated()
    else
        item:add_proto_expert_info(ne.unknown, string.format(
            "Unknown information code class 0x%x code 0x%02x", class, code))
        meaning = string.format("class 0x%x code 0x%02x", class, code)
    end
    item:append_text(string.format(": %s, %s", name_of(NATFW.SEVERITY, class), meaning))
    return 4, meaning
end

local function dissect_dtinfo(r, tree, item)
    if not nneed(r, 0, 4, item, "DTINFO header") then return end
    local flags = r(0, 1):uint()
    local fi = tree:add(nf.dt_flags, r(0, 1))
    for _, f in ipairs({ nf.dt_i, nf.dt_p, nf.dt_s, nf.dt_flags_rsv }) do fi:add(f, r(0, 1)) end
    tree:add(nf.dt_prefix, r(1, 1))
    tree:add(nf.dt_protocol, r(2, 1))
    tree:add(nf.dt_ds, r(3, 1))
    tree:add(nf.dt_rsv, r(3, 1))
    if bits(flags, 0, 5) ~= 0 or bits(r(3, 1):uint(), 0, 2) ~= 0 then
        item:add_proto_expert_info(ne.protocol, "Reserved DTINFO bits set")
    end
    if has(flags, NATFW.DT_P) and has(flags, NATFW.DT_I) then
        item:add_proto_expert_info(ne.protocol, "DTINFO with both ports (P) and an SPI (I)")
    end
    local off = 4
    if has(flags, NATFW.DT_P) then      -- receiver (destination) port, then sender port
        if not nneed(r, off, 4, item, "DTINFO ports") then return end
        tree:add(nf.dt_rport, r(off, 2))
        tree:add(nf.dt_sport, r(off + 2, 2))
        off = off + 4
    end
    if has(flags, NATFW.DT_I) then
        if not nneed(r, off, 4, item, "DTINFO SPI") then return end
        tree:add(nf.dt_spi, r(off, 4))
        off = off + 4
    end
    if has(flags, NATFW.DT_S) then
        local rest = r:len() - off
        if rest == 4 then tree:add(nf.dt_sender4, r(off, 4))
        elseif rest == 16 then tree:add(nf.dt_sender6, r(off, 16))
        else
            item:add_proto_expert_info(ne.malformed, string.format(
                "DTINFO sender address of %d bytes", rest))
            return
        end
        off = off + rest
    end
    return off
end

local function dissect_icmp_types(r, tree, item)
    if not nneed(r, 0, 1, item, "ICMP types count") then return end
    local n = r(0, 1):uint()
    tree:add(nf.icmp_count, r(0, 1))
    if not nneed(r, 1, n + pad4(1 + n), item, "ICMP types") then return end
    for i = 1, n do tree:add(nf.icmp_type, r(i, 1)) end
    if pad4(1 + n) > 0 then npadding(r(1 + n, pad4(1 + n)), tree, item) end
    return 1 + n + pad4(1 + n)
end

local function dissect_mip6(r, tree, item)
    if not nneed(r, 0, 4, item, "MIP6 flow") then return end
    local kind, mh = r(0, 1):uint(), r(1, 1):uint()
    tree:add(nf.mip6_kind, r(0, 1))
    tree:add(nf.mip6_mh_type, r(1, 1))
    tree:add(nf.mip6_rsv, r(2, 2))
    local text = name_of(NATFW.MIP6_KIND, kind)
    if kind == NATFW.MIP6_KIND_MH then text = text .. " " .. name_of(NATFW.MH_TYPE, mh) end
    if NATFW.MIP6_KIND[kind] == nil then
        item:add_proto_expert_info(ne.unknown, "Unknown MIP6 flow kind " .. kind)
    end
    if r(2, 2):uint() ~= 0 then item:add_proto_expert_info(ne.protocol, "Reserved MIP6 flow bits set") end
    local rest = r:len() - 4
    if rest == 16 then
        tree:add(nf.mip6_hoa, r(4, 16))
        text = text .. ", HoA " .. tostring(r(4, 16):ipv6())
    elseif rest ~= 0 then
        item:add_proto_expert_info(ne.malformed, string.format("MIP6 flow home address of %d bytes", rest))
        return
    end
    item:append_text(": " .. text)
    return r:len()
end

local NATFW_DECODERS = {
    [NATFW.T_LT] = function(r, tree, item)
        tree:add(nf.lifetime, r(0, 4))
        item:append_text(": " .. r(0, 4):uint() .. " s")
        return 4
    end,
    [NATFW.T_EXTERNAL_IP] = function(r, tree, item)
        tree:add(nf.ext_port, r(0, 2))
        tree:add(nf.ext_protocol, r(2, 1))
        tree:add(nf.ext_rsv, r(3, 1))
        tree:add(nf.ext_ipv4, r(4, 4))
        return 8
    end,
    [NATFW.T_EFI] = function(r, tree, item)
        tree:add(nf.efi_action, r(0, 2))
        tree:add(nf.efi_sub_ports, r(2, 2))
        if NATFW.EFI_ACTION[r(0, 2):uint()] == nil then
            item:add_proto_expert_info(ne.unknown, "Unknown rule action " .. r(0, 2):uint())
        end
        item:append_text(": " .. name_of(NATFW.EFI_ACTION, r(0, 2):uint()))
        return 4
    end,
    [NATFW.T_INFO] = dissect_info,
    [NATFW.T_NONCE] = function(r, tree, item)
        tree:add(nf.nonce, r(0, 4))
        return 4
    end,
    [NATFW.T_MSN] = function(r, tree, item)
        tree:add(nf.msn, r(0, 4))
        item:append_text(": " .. r(0, 4):uint())
        return 4
    end,
    [NATFW.T_DTINFO] = dissect_dtinfo,
    [NATFW.T_ICMP_TYPES] = dissect_icmp_types,
    [NATFW.T_SESSION_AUTH] = dissect_session_auth,
    [NATFW.T_MIP6_FLOW] = dissect_mip6,
}
NATFW_DECODERS[NATFW.T_EXTERNAL_BINDING] = NATFW_DECODERS[NATFW.T_EXTERNAL_IP]

---------------------------------------------------------------------------- NATFW message
function natfw.dissector(tvb, pinfo, tree)
    local total = tvb:len()
    local root = tree:add(natfw, tvb())
    if total < 4 then
        root:add_proto_expert_info(ne.malformed, string.format("Message of %d bytes", total))
        return total
    end
    if total % 4 ~= 0 then
        root:add_proto_expert_info(ne.malformed, string.format("Message length %d not a multiple of 4", total))
    end
    local mtype, flags = tvb(0, 1):uint(), tvb(1, 1):uint()
    root:add(nf.msg_type, tvb(0, 1))
    local fi = root:add(nf.flags, tvb(1, 1))
    fi:add(nf.flag_p, tvb(1, 1))
    fi:add(nf.flag_rsv, tvb(1, 1))
    root:add(nf.reserved, tvb(2, 2))
    if bits(flags, 0, 7) ~= 0 or tvb(2, 2):uint() ~= 0 then
        root:add_proto_expert_info(ne.protocol, "Reserved header bits set")
    end
    local mname = name_of(NATFW.MSG, mtype, string.format("type 0x%x", mtype))
    if NATFW.MSG[mtype] == nil then
        root:add_proto_expert_info(ne.unknown, "Unknown NATFW message type " .. mtype)
    end
    root:append_text(", " .. mname)
    local summary = "NATFW " .. mname
    local off = 4
    local seen = {}
    while off < total do
        if total - off < 4 then
            root:add_tvb_expert_info(ne.malformed, tvb(off, total - off), "Truncated object header")
            break
        end
        local o = add_object(tvb, off, total, root, NATFW_OBJECT)
        local otype, avail = o.type, o.avail
        if seen[otype] then o.tree:add_proto_expert_info(ne.protocol, "Duplicate object") end
        seen[otype] = true
        local decoder = NATFW_DECODERS[otype]
        local fixed = NATFW.FIXED[otype]
        if fixed and o.vlen ~= fixed and avail == o.vlen then
            o.tree:add_proto_expert_info(ne.malformed, string.format(
                "Object of %d bytes, expected %d", o.vlen, fixed))
        end
        if decoder == nil then
            if o.ab == 0 then
                o.tree:add_proto_expert_info(ne.unknown, string.format("Unknown mandatory object 0x%03x", otype))
            end
            if avail > 0 then o.tree:add(nf.obj_value, tvb(off + 4, avail)) end
        elseif avail > 0 and (fixed == nil or avail >= fixed) then
            local meaning = decode_value(decoder, o, tvb(off + 4, avail), ne)
            if otype == NATFW.T_INFO and meaning then summary = summary .. " (" .. meaning .. ")" end
        elseif avail == 0 and o.vlen == 0 and fixed == nil then
            o.tree:add_proto_expert_info(ne.malformed, "Empty " .. name_of(NATFW.OBJ, otype))
        end
        off = off + 4 + avail
    end
    for _, t in ipairs(NATFW.MANDATORY[mtype] or {}) do
        if not seen[t] then
            root:add_proto_expert_info(ne.protocol, mname .. " without " .. NATFW.OBJ[t])
        end
    end
    pinfo.cols.protocol:set("GIST/NATFW")
    pinfo.cols.info:append(", " .. summary)
    return total
end

nslp_table:add(NATFW.NSLPID, natfw)
