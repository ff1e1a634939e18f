"""NATFW NSLP (RFC 5973): wire codec and sans-I/O cores for the NSIS initiator (the MN),
forwarder (the firewall) and responder (the CN). Pure logic, no I/O; GIST (RFC 5971)
carries the message bytes together with a session id and MRI given as plain values.

    wire   strict codec: common header, objects, CREATE/EXT/RESPONSE/NOTIFY,
           the Mobile IPv6 flow extension object (private object type 0x7D0)
    core   NiCore, NfCore, NrCore and their effects (InstallPinhole, RemovePinhole,
           SendNslp, ...)
"""
