"""The symmetric primitives mip6bench needs, over OpenSSL 3's libcrypto through ctypes.

EAP-PSK wants AES-128 (raw block encryptions, CTR and CMAC, for its key derivations,
MACs and EAX channel), the PAA-HA SA channel AES-128-GCM and HKDF-SHA256. Python's
hashlib has already loaded libcrypto, so calling it through ctypes costs next to no
memory or start-up time (the `cryptography` package, which the tests keep as their
oracle, costs an agent ~7 MB and ~15 ms).

    aes128_ecb_encrypt(key, data) -> bytes          data: whole 16-byte blocks, no padding
    aes128_ctr(key, counter_block, data) -> bytes   the 16-byte block is one big-endian
                                                    counter, +1 per block, mod 2^128
    aes128_cmac(key, data) -> 16-byte tag           RFC 4493
    gcm = Aes128Gcm(key)                            AES-128-GCM, 16-byte tag appended
    gcm.encrypt(nonce, plaintext, aad) -> ciphertext || tag
    gcm.decrypt(nonce, ciphertext || tag, aad) -> plaintext, or raises InvalidTag
    hkdf_sha256(ikm, salt, info, length) -> bytes   RFC 5869 (over hmac/hashlib)

Keys are exactly 16 bytes (ValueError otherwise); GCM nonces 8..128 bytes (12 is the
norm). Tags are compared in constant time (OpenSSL's GCM check; hmac.compare_digest
in the callers). A failing OpenSSL call raises OpenSSLError with OpenSSL's error
queue; a libcrypto that is missing or older than 3.0 makes the import raise
CryptoUnavailable (an EnvironmentProblem naming the fix).

Each thread keeps one cipher context per mode and one CMAC context, created on its
first use and freed with the thread; every operation re-keys its context (nothing is
allocated in OpenSSL per call, so nothing can leak), and the EVP_CIPHER / EVP_MAC
objects are fetched once. Not re-entrant from a signal handler that itself encrypts
in the interrupted thread.
"""
from __future__ import annotations

import ctypes
import hmac
import threading
from ctypes import (byref, c_char, c_char_p, c_int, c_size_t, c_uint, c_ulong, c_void_p,
                    create_string_buffer)

from mip6bench.errors import EnvironmentProblem

__all__ = ["Aes128Gcm", "CryptoUnavailable", "InvalidTag", "OpenSSLError", "aes128_cmac",
           "aes128_ctr", "aes128_ecb_encrypt", "hkdf_sha256", "libcrypto_path",
           "openssl_version"]

BLOCK_SIZE = 16
KEY_SIZE = 16
GCM_TAG_SIZE = 16
GCM_NONCE_MIN, GCM_NONCE_MAX = 8, 128
_MAX_LEN = 1 << 30                      # EVP lengths are C ints
_Block = c_char * BLOCK_SIZE
_FIX = ("install OpenSSL 3's libcrypto (Debian/Ubuntu: apt-get install libssl3) and use "
        "a Python whose hashlib links it")


class CryptoUnavailable(EnvironmentProblem):
    """No usable OpenSSL 3 libcrypto in this process."""


class OpenSSLError(RuntimeError):
    """An OpenSSL call failed (not an authentication failure: that is InvalidTag)."""


class InvalidTag(ValueError):
    """The AES-GCM tag did not verify: the key, nonce, associated data or ciphertext
    is not what was sealed."""


# ---- loading libcrypto -----------------------------------------------------------------

def _loaded_libcrypto() -> str | None:
    """The libcrypto hashlib's _hashlib mapped into this process, if any."""
    try:
        import _hashlib  # noqa: F401  (loads libcrypto; hashlib normally has already)
    except ImportError:
        return None
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)   # address perms offset dev inode path
                path = fields[5].strip() if len(fields) == 6 else ""
                if path.rsplit("/", 1)[-1].startswith("libcrypto.so"):
                    return path
    except OSError:
        pass
    return None


def _load() -> tuple[ctypes.CDLL, str]:
    candidates = [p for p in (_loaded_libcrypto(), "libcrypto.so.3") if p]
    tried = []
    for name in candidates:
        try:
            return ctypes.CDLL(name), name
        except OSError as exc:
            tried.append(f"{name}: {exc}")
    from ctypes.util import find_library   # runs ldconfig: only when the above failed
    name = find_library("crypto")
    if name:
        try:
            return ctypes.CDLL(name), name
        except OSError as exc:
            tried.append(f"{name}: {exc}")
    raise CryptoUnavailable("OpenSSL's libcrypto not found"
                            + (f" ({'; '.join(tried)})" if tried else ""), _FIX)


_lib, _path = _load()


def _fn(name: str, restype, *argtypes):
    try:
        f = getattr(_lib, name)
    except AttributeError:
        raise CryptoUnavailable(f"{_path} has no {name}: not OpenSSL 3", _FIX) from None
    f.restype, f.argtypes = restype, argtypes
    return f


_version_num = _fn("OpenSSL_version_num", c_ulong)
_version_str = _fn("OpenSSL_version", c_char_p, c_int)
if _version_num() < 0x30000000:
    raise CryptoUnavailable(
        f"{_path} is {_version_str(0).decode(errors='replace')}, mip6bench needs OpenSSL 3",
        _FIX)

_P = c_void_p    # every pointer argument: ctx, buffers (bytes or ctypes arrays), NULL
_ERR_get_error = _fn("ERR_get_error", c_ulong)
_ERR_error_string_n = _fn("ERR_error_string_n", None, c_ulong, _P, c_size_t)
_ERR_clear_error = _fn("ERR_clear_error", None)
_CIPHER_fetch = _fn("EVP_CIPHER_fetch", _P, _P, c_char_p, c_char_p)
_CTX_new = _fn("EVP_CIPHER_CTX_new", _P)
_CTX_free = _fn("EVP_CIPHER_CTX_free", None, _P)
_CTX_ctrl = _fn("EVP_CIPHER_CTX_ctrl", c_int, _P, c_int, c_int, _P)
_CTX_set_padding = _fn("EVP_CIPHER_CTX_set_padding", c_int, _P, c_int)
_EncryptInit = _fn("EVP_EncryptInit_ex", c_int, _P, _P, _P, _P, _P)
_EncryptUpdate = _fn("EVP_EncryptUpdate", c_int, _P, _P, _P, _P, c_int)
_EncryptFinal = _fn("EVP_EncryptFinal_ex", c_int, _P, _P, _P)
_DecryptInit = _fn("EVP_DecryptInit_ex", c_int, _P, _P, _P, _P, _P)
_DecryptUpdate = _fn("EVP_DecryptUpdate", c_int, _P, _P, _P, _P, c_int)
_DecryptFinal = _fn("EVP_DecryptFinal_ex", c_int, _P, _P, _P)
_MAC_fetch = _fn("EVP_MAC_fetch", _P, _P, c_char_p, c_char_p)
_MAC_CTX_new = _fn("EVP_MAC_CTX_new", _P, _P)
_MAC_CTX_free = _fn("EVP_MAC_CTX_free", None, _P)
_MAC_CTX_set_params = _fn("EVP_MAC_CTX_set_params", c_int, _P, _P)
_MAC_init = _fn("EVP_MAC_init", c_int, _P, _P, c_size_t, _P)
_MAC_update = _fn("EVP_MAC_update", c_int, _P, _P, c_size_t)
_MAC_final = _fn("EVP_MAC_final", c_int, _P, _P, _P, c_size_t)

_CTRL_AEAD_SET_IVLEN, _CTRL_AEAD_GET_TAG, _CTRL_AEAD_SET_TAG = 0x9, 0x10, 0x11


def _fail(what: str):
    """Raise OpenSSLError for a failed call, with (and draining) the thread's error queue,
    which hashlib and ssl share."""
    messages, buf = [], create_string_buffer(256)
    while code := _ERR_get_error():
        _ERR_error_string_n(code, buf, 256)
        messages.append(buf.value.decode(errors="replace"))
    raise OpenSSLError(f"{what} failed" + (f": {'; '.join(messages)}" if messages else ""))


def _fetch(fetch, name: bytes) -> c_void_p:
    ptr = fetch(None, name, None)
    if not ptr:
        _ERR_clear_error()
        raise CryptoUnavailable(f"{_path} does not provide {name.decode()}", _FIX)
    return c_void_p(ptr)


# Fetched once for the life of the process (explicit fetches: OpenSSL 3 would otherwise
# look the implementation up again whenever a context is set up with a cipher).
_AES_128_ECB = _fetch(_CIPHER_fetch, b"AES-128-ECB")
_AES_128_CTR = _fetch(_CIPHER_fetch, b"AES-128-CTR")
_AES_128_GCM = _fetch(_CIPHER_fetch, b"AES-128-GCM")
_CMAC = _fetch(_MAC_fetch, b"CMAC")


class _OsslParam(ctypes.Structure):
    _fields_ = [("key", c_char_p), ("data_type", c_uint), ("data", c_void_p),
                ("data_size", c_size_t), ("return_size", c_size_t)]


_OSSL_PARAM_UTF8_STRING, _OSSL_PARAM_UNMODIFIED = 4, c_size_t(-1).value
_CMAC_CIPHER = create_string_buffer(b"AES-128-CBC")    # lives as long as the module
_CMAC_PARAMS = (_OsslParam * 2)(
    _OsslParam(b"cipher", _OSSL_PARAM_UTF8_STRING, ctypes.addressof(_CMAC_CIPHER),
               len(_CMAC_CIPHER.value), _OSSL_PARAM_UNMODIFIED),
    _OsslParam())                                       # the terminating entry


class _Ctx:
    """One OpenSSL context, freed with its owner (a thread's _State)."""
    __slots__ = ("ptr", "_free", "ivlen")

    def __init__(self, ptr, free, ivlen: int = 0):
        self.ptr, self._free, self.ivlen = c_void_p(ptr), free, ivlen

    def __del__(self):
        if self.ptr:
            self._free(self.ptr)
            self.ptr = c_void_p()


def _cipher_ctx(cipher: c_void_p, encrypt: bool, padding: bool = True, ivlen: int = 0) -> _Ctx:
    ptr = _CTX_new()
    if not ptr:
        _fail("EVP_CIPHER_CTX_new")
    ctx = _Ctx(ptr, _CTX_free, ivlen)
    init = _EncryptInit if encrypt else _DecryptInit
    if init(ctx.ptr, cipher, None, None, None) != 1:
        _fail("EVP_CipherInit_ex")
    if not padding and _CTX_set_padding(ctx.ptr, 0) != 1:
        _fail("EVP_CIPHER_CTX_set_padding")
    return ctx


def _cmac_ctx() -> _Ctx:
    ptr = _MAC_CTX_new(_CMAC)
    if not ptr:
        _fail("EVP_MAC_CTX_new")
    ctx = _Ctx(ptr, _MAC_CTX_free)
    if _MAC_CTX_set_params(ctx.ptr, _CMAC_PARAMS) != 1:
        _fail("EVP_MAC_CTX_set_params(cipher=AES-128-CBC)")
    return ctx


class _State(threading.local):
    """Per-thread contexts, created on the thread's first use, dropped (and freed) with
    the thread. Every use sets the key (and IV) first, so no state carries over."""

    def __init__(self):
        self.ecb = _cipher_ctx(_AES_128_ECB, encrypt=True, padding=False)
        self.ctr = _cipher_ctx(_AES_128_CTR, encrypt=True)
        self.gcm_seal = _cipher_ctx(_AES_128_GCM, encrypt=True, ivlen=12)
        self.gcm_open = _cipher_ctx(_AES_128_GCM, encrypt=False, ivlen=12)
        self.cmac = _cmac_ctx()
        self.outl = c_int()
        self.p_outl = byref(self.outl)
        self.macl = c_size_t()
        self.p_macl = byref(self.macl)


_tls = _State()


def _as_bytes(data) -> bytes:
    return data if type(data) is bytes else bytes(data)


def _check_key(key) -> bytes:
    key = _as_bytes(key)
    if len(key) != KEY_SIZE:
        raise ValueError(f"AES-128 needs a 16-byte key, got {len(key)} bytes")
    return key


def _check_len(n: int) -> None:
    if n > _MAX_LEN:
        raise ValueError(f"{n} bytes is more than this module handles in one call")


# ---- AES-128: ECB, CTR, CMAC ---------------------------------------------------------------

def aes128_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """AES-128 applied to each 16-byte block of data (no padding: len(data) % 16 == 0)."""
    key, data = _check_key(key), _as_bytes(data)
    n = len(data)
    if n == 0 or n % BLOCK_SIZE:
        raise ValueError(f"AES-ECB input must be whole 16-byte blocks, got {n} bytes")
    _check_len(n)
    s = _tls
    ctx = s.ecb.ptr
    if _EncryptInit(ctx, None, None, key, None) != 1:
        _fail("EVP_EncryptInit_ex(AES-128-ECB)")
    out = (c_char * (n + BLOCK_SIZE))()          # EVP's contract: room for inl + block
    if _EncryptUpdate(ctx, out, s.p_outl, data, n) != 1 or s.outl.value != n:
        _fail("EVP_EncryptUpdate(AES-128-ECB)")
    return out.raw[:n]


def aes128_ctr(key: bytes, counter_block: bytes, data: bytes) -> bytes:
    """AES-128-CTR (encryption and decryption alike) starting at counter_block, which is
    incremented as one 128-bit big-endian integer (wrapping to zero after all ones)."""
    key, counter_block, data = _check_key(key), _as_bytes(counter_block), _as_bytes(data)
    if len(counter_block) != BLOCK_SIZE:
        raise ValueError(f"CTR counter block must be 16 bytes, got {len(counter_block)}")
    n = len(data)
    if n == 0:
        return b""
    _check_len(n)
    s = _tls
    ctx = s.ctr.ptr
    if _EncryptInit(ctx, None, None, key, counter_block) != 1:
        _fail("EVP_EncryptInit_ex(AES-128-CTR)")
    out = (c_char * n)()                        # a stream mode: output == input length
    if _EncryptUpdate(ctx, out, s.p_outl, data, n) != 1 or s.outl.value != n:
        _fail("EVP_EncryptUpdate(AES-128-CTR)")
    return out.raw


def aes128_cmac(key: bytes, data: bytes) -> bytes:
    """AES-128-CMAC (RFC 4493) of data: the full 16-byte tag."""
    key, data = _check_key(key), _as_bytes(data)
    s = _tls
    ctx = s.cmac.ptr
    if _MAC_init(ctx, key, KEY_SIZE, None) != 1:
        _fail("EVP_MAC_init(CMAC)")
    if data and _MAC_update(ctx, data, len(data)) != 1:
        _fail("EVP_MAC_update(CMAC)")
    out = _Block()
    if _MAC_final(ctx, out, s.p_macl, BLOCK_SIZE) != 1 or s.macl.value != BLOCK_SIZE:
        _fail("EVP_MAC_final(CMAC)")
    return out.raw


# ---- AES-128-GCM ----------------------------------------------------------------------------

class Aes128Gcm:
    """AES-128-GCM with a 16-byte tag, the output as ciphertext || tag (the layout of
    cryptography's AESGCM, which it replaces)."""
    __slots__ = ("_key",)

    def __init__(self, key: bytes):
        self._key = _check_key(key)

    def __repr__(self) -> str:
        return "Aes128Gcm(<key>)"

    @staticmethod
    def _nonce(nonce) -> bytes:
        nonce = _as_bytes(nonce)
        if not GCM_NONCE_MIN <= len(nonce) <= GCM_NONCE_MAX:
            raise ValueError(f"GCM nonce must be {GCM_NONCE_MIN}..{GCM_NONCE_MAX} bytes, "
                             f"got {len(nonce)}")
        return nonce

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None = b"") -> bytes:
        nonce, data = self._nonce(nonce), _as_bytes(data)
        aad = _as_bytes(associated_data) if associated_data else b""
        n = len(data)
        _check_len(max(n, len(aad)))
        s = _tls
        c = s.gcm_seal
        ctx = c.ptr
        if len(nonce) != c.ivlen:
            c.ivlen = 0    # unknown until the call succeeds
            if _CTX_ctrl(ctx, _CTRL_AEAD_SET_IVLEN, len(nonce), None) != 1:
                _fail("EVP_CIPHER_CTX_ctrl(GCM set IV length)")
            c.ivlen = len(nonce)
        if _EncryptInit(ctx, None, None, self._key, nonce) != 1:
            _fail("EVP_EncryptInit_ex(AES-128-GCM)")
        if aad and _EncryptUpdate(ctx, None, s.p_outl, aad, len(aad)) != 1:
            _fail("EVP_EncryptUpdate(AES-128-GCM, AAD)")
        out = (c_char * (n + GCM_TAG_SIZE))()
        if n and (_EncryptUpdate(ctx, out, s.p_outl, data, n) != 1 or s.outl.value != n):
            _fail("EVP_EncryptUpdate(AES-128-GCM)")
        end = byref(out, n)
        if _EncryptFinal(ctx, end, s.p_outl) != 1 or s.outl.value:
            _fail("EVP_EncryptFinal_ex(AES-128-GCM)")
        if _CTX_ctrl(ctx, _CTRL_AEAD_GET_TAG, GCM_TAG_SIZE, end) != 1:
            _fail("EVP_CIPHER_CTX_ctrl(GCM get tag)")
        return out.raw

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None = b"") -> bytes:
        """The plaintext of data (ciphertext || tag); raises InvalidTag unless it verifies."""
        nonce, data = self._nonce(nonce), _as_bytes(data)
        aad = _as_bytes(associated_data) if associated_data else b""
        n = len(data) - GCM_TAG_SIZE
        if n < 0:
            raise InvalidTag("GCM input shorter than its tag")
        _check_len(max(n, len(aad)))
        s = _tls
        c = s.gcm_open
        ctx = c.ptr
        if len(nonce) != c.ivlen:
            c.ivlen = 0
            if _CTX_ctrl(ctx, _CTRL_AEAD_SET_IVLEN, len(nonce), None) != 1:
                _fail("EVP_CIPHER_CTX_ctrl(GCM set IV length)")
            c.ivlen = len(nonce)
        if _DecryptInit(ctx, None, None, self._key, nonce) != 1:
            _fail("EVP_DecryptInit_ex(AES-128-GCM)")
        if aad and _DecryptUpdate(ctx, None, s.p_outl, aad, len(aad)) != 1:
            _fail("EVP_DecryptUpdate(AES-128-GCM, AAD)")
        out = (c_char * (n + GCM_TAG_SIZE))()
        if n and (_DecryptUpdate(ctx, out, s.p_outl, data, n) != 1 or s.outl.value != n):
            _fail("EVP_DecryptUpdate(AES-128-GCM)")
        if _CTX_ctrl(ctx, _CTRL_AEAD_SET_TAG, GCM_TAG_SIZE, data[n:]) != 1:
            _fail("EVP_CIPHER_CTX_ctrl(GCM set tag)")
        if _DecryptFinal(ctx, byref(out, n), s.p_outl) != 1:
            _ERR_clear_error()    # a tag mismatch; leave nothing on the shared queue
            raise InvalidTag("AES-GCM tag does not verify")
        return out.raw[:n]


# ---- HKDF-SHA256 ----------------------------------------------------------------------------

_SHA256_LEN = 32


def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """HKDF-Extract then HKDF-Expand (RFC 5869) with HMAC-SHA256; no salt means
    HashLen zero bytes (section 2.2)."""
    if not 1 <= length <= 255 * _SHA256_LEN:
        raise ValueError(f"HKDF-SHA256 output length must be 1..{255 * _SHA256_LEN}")
    prk = hmac.digest(_as_bytes(salt) if salt else bytes(_SHA256_LEN), _as_bytes(ikm), "sha256")
    info = _as_bytes(info)
    blocks, t = [], b""
    for i in range(1, -(-length // _SHA256_LEN) + 1):
        t = hmac.digest(prk, t + info + bytes((i,)), "sha256")
        blocks.append(t)
    return b"".join(blocks)[:length]


# ---- about the library ----------------------------------------------------------------------

def openssl_version() -> str:
    """OpenSSL's version text, e.g. "OpenSSL 3.0.19 27 Jan 2026"."""
    return _version_str(0).decode(errors="replace")


def libcrypto_path() -> str:
    """The libcrypto this module calls (the one hashlib loaded, when it could tell)."""
    return _path
