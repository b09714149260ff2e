#!/usr/bin/env python3
"""Negative ABI cases of /dev/sev-guest and configfs-tsm, from user space.

A ctypes client of the Linux uAPI (include/uapi/linux/sev-guest.h) that checks the
sev-guest driver's answers (drivers/virt/coco/sev-guest/sev-guest.c, frontends.md
§5.1, §5.2, §7.4): run inside `softsev exec --guest [--tsm] [--vmpl N]`.

    python3 tests/abi/sev_guest_ioctl.py [--device /dev/sev-guest] [--vmpl N]
                                         [--tsm /sys/kernel/config/tsm/report]

--vmpl is the VMPL softsev exec gave the guest (default 0). Prints one line per
check (PASS / FAIL / SKIP) and exits 1 if any check failed, 2 if the device cannot
be opened.
"""

import argparse
import ctypes
import errno
import os
import sys
import tempfile

SNP_GET_REPORT = 0xC0205300
SNP_GET_DERIVED_KEY = 0xC0205301
SNP_GET_EXT_REPORT = 0xC0205302
SEV_RET_INVALID_PARAM = 0x16
SNP_GUEST_VMM_ERR_INVALID_LEN = 1
# The ARK's entry in the GHCB certificate table (snpguest's GUID, as bytes).
ARK_GUID = bytes.fromhex("c0b406a4a803495297433fb6014cd0ae")


class SnpGuestRequestIoctl(ctypes.Structure):
    _fields_ = [
        ("msg_version", ctypes.c_uint8),
        ("req_data", ctypes.c_uint64),
        ("resp_data", ctypes.c_uint64),
        ("exitinfo2", ctypes.c_uint64),
    ]


class SnpReportReq(ctypes.Structure):
    _fields_ = [
        ("user_data", ctypes.c_uint8 * 64),
        ("vmpl", ctypes.c_uint32),
        ("rsvd", ctypes.c_uint8 * 28),
    ]


class SnpExtReportReq(ctypes.Structure):
    _fields_ = [
        ("data", SnpReportReq),
        ("certs_address", ctypes.c_uint64),
        ("certs_len", ctypes.c_uint32),
    ]


class SnpReportResp(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * 4000)]


class SnpDerivedKeyReq(ctypes.Structure):
    _fields_ = [
        ("root_key_select", ctypes.c_uint32),
        ("rsvd", ctypes.c_uint32),
        ("guest_field_select", ctypes.c_uint64),
        ("vmpl", ctypes.c_uint32),
        ("guest_svn", ctypes.c_uint32),
        ("tcb_version", ctypes.c_uint64),
    ]


class SnpDerivedKeyResp(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * 64)]


assert ctypes.sizeof(SnpGuestRequestIoctl) == 32
assert ctypes.sizeof(SnpReportReq) == 96
assert ctypes.sizeof(SnpExtReportReq) == 112
assert ctypes.sizeof(SnpDerivedKeyReq) == 32

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
LIBC.ioctl.restype = ctypes.c_int

FAILED = []


def check(name, ok, detail=""):
    print(("PASS" if ok else "FAIL"), name, detail)
    if not ok:
        FAILED.append(name)


def skip(name, why):
    print("SKIP", name, why)


def ioctl(fd, cmd, io):
    """The raw ioctl: (return value, errno)."""
    ctypes.set_errno(0)
    rc = LIBC.ioctl(fd, cmd, ctypes.addressof(io))
    return rc, (ctypes.get_errno() if rc < 0 else 0)


def request(msg_version, req, resp):
    io = SnpGuestRequestIoctl()
    io.msg_version = msg_version
    io.req_data = ctypes.addressof(req) if req is not None else 0
    io.resp_data = resp if isinstance(resp, int) else ctypes.addressof(resp)
    # A marker the driver must leave alone on success.
    io.exitinfo2 = 0x1234
    # The buffers must outlive the call: the structure only holds their addresses.
    io.keep = (req, resp)
    return io


def report_req(nonce, vmpl):
    r = SnpReportReq()
    ctypes.memmove(r.user_data, nonce, 64)
    r.vmpl = vmpl
    return r


def u32(b, off):
    return int.from_bytes(bytes(b[off:off + 4]), "little")


def ioctl_cases(fd, guest_vmpl):
    nonce = os.urandom(64)
    resp = SnpReportResp()

    # A plain report: success leaves the structure untouched (exitinfo2 not copied).
    io = request(1, report_req(nonce, guest_vmpl), resp)
    rc, e = ioctl(fd, SNP_GET_REPORT, io)
    check("report", rc == 0 and u32(resp.data, 0) == 0
          and bytes(resp.data[0x20 + 0x50:0x20 + 0x90]) == nonce,
          f"rc={rc} errno={e} status={u32(resp.data, 0):#x}")
    check("report leaves exitinfo2 alone", io.exitinfo2 == 0x1234, f"{io.exitinfo2:#x}")

    # msg_version 0 -> EINVAL, exitinfo2 = 0xff copied back.
    io = request(0, report_req(nonce, guest_vmpl), resp)
    rc, e = ioctl(fd, SNP_GET_REPORT, io)
    check("msg_version 0 -> EINVAL", rc == -1 and e == errno.EINVAL, f"rc={rc} errno={e}")
    check("msg_version 0: exitinfo2 0xff", io.exitinfo2 == 0xFF, f"{io.exitinfo2:#x}")

    # Unknown command of the same shape -> ENOTTY.
    io = request(1, report_req(nonce, guest_vmpl), resp)
    rc, e = ioctl(fd, 0xC0205303, io)
    check("unknown ioctl -> ENOTTY", rc == -1 and e == errno.ENOTTY, f"rc={rc} errno={e}")

    # Null request pointer -> EINVAL.
    io = request(1, None, resp)
    rc, e = ioctl(fd, SNP_GET_REPORT, io)
    check("null req_data -> EINVAL", rc == -1 and e == errno.EINVAL, f"rc={rc} errno={e}")

    # A response pointer into the unmapped first page -> EFAULT (after the request).
    io = request(1, report_req(nonce, guest_vmpl), 0x10)
    rc, e = ioctl(fd, SNP_GET_REPORT, io)
    check("bad resp_data -> EFAULT", rc == -1 and e == errno.EFAULT, f"rc={rc} errno={e}")

    # VMPL below the guest's: the exchange succeeds, MSG_REPORT_RSP status 0x16.
    if guest_vmpl > 0:
        resp = SnpReportResp()
        io = request(1, report_req(nonce, guest_vmpl - 1), resp)
        rc, e = ioctl(fd, SNP_GET_REPORT, io)
        check("vmpl below the guest's -> status 0x16",
              rc == 0 and u32(resp.data, 0) == SEV_RET_INVALID_PARAM,
              f"rc={rc} errno={e} status={u32(resp.data, 0):#x}")
    else:
        skip("vmpl below the guest's", "the guest runs at VMPL0 (give --vmpl N with softsev exec --vmpl N)")

    # Extended report, certs_len 0: EIO, exitinfo2 = INVALID_LEN << 32, the length
    # needed written back into the request; resp_data untouched.
    ext = SnpExtReportReq()
    ext.data = report_req(nonce, guest_vmpl)
    ext.certs_address = 0xFFFFFFFFFFFFFFFF
    ext.certs_len = 0
    resp = SnpReportResp()
    ctypes.memset(ctypes.addressof(resp), 0xEE, 16)
    io = request(1, ext, resp)
    rc, e = ioctl(fd, SNP_GET_EXT_REPORT, io)
    check("ext report certs_len 0 -> EIO", rc == -1 and e == errno.EIO, f"rc={rc} errno={e}")
    check("ext report certs_len 0: exitinfo2 1<<32",
          io.exitinfo2 == SNP_GUEST_VMM_ERR_INVALID_LEN << 32, f"{io.exitinfo2:#x}")
    need = ext.certs_len
    check("ext report certs_len 0: certs_len written back",
          need > 0 and need % 4096 == 0, f"certs_len={need}")
    check("ext report certs_len 0: resp_data untouched", bytes(resp.data[:16]) == b"\xee" * 16)

    # Lengths the driver refuses: > 16 KiB or not page aligned.
    for bad in (4097, 0x5000, 100):
        certs = (ctypes.c_uint8 * 0x5000)()
        ext.certs_address = ctypes.addressof(certs)
        ext.certs_len = bad
        io = request(1, ext, resp)
        rc, e = ioctl(fd, SNP_GET_EXT_REPORT, io)
        check(f"ext report certs_len {bad} -> EINVAL", rc == -1 and e == errno.EINVAL,
              f"rc={rc} errno={e}")

    # The length asked for: the report and the certificate table.
    if 0 < need <= 0x4000:
        certs = (ctypes.c_uint8 * need)()
        ext.certs_address = ctypes.addressof(certs)
        ext.certs_len = need
        resp = SnpReportResp()
        io = request(1, ext, resp)
        rc, e = ioctl(fd, SNP_GET_EXT_REPORT, io)
        check("ext report with the length asked for",
              rc == 0 and bytes(resp.data[0x20 + 0x50:0x20 + 0x90]) == nonce
              and bytes(certs[:16]) == ARK_GUID,
              f"rc={rc} errno={e} first GUID={bytes(certs[:16]).hex()}")

    # Derived key: 32 bytes read, 64 written, status 0.
    kreq = SnpDerivedKeyReq()
    kreq.guest_field_select = 1 << 3
    kreq.vmpl = guest_vmpl
    kresp = SnpDerivedKeyResp()
    io = request(1, kreq, kresp)
    rc, e = ioctl(fd, SNP_GET_DERIVED_KEY, io)
    check("derived key", rc == 0 and u32(kresp.data, 0) == 0 and any(kresp.data[32:]),
          f"rc={rc} errno={e} status={u32(kresp.data, 0):#x}")


def write_attr(path, data):
    """One write(2) of `data`; the errno or 0."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as ex:
        return ex.errno
    try:
        os.write(fd, data)
        return 0
    except OSError as ex:
        return ex.errno
    finally:
        os.close(fd)


def read_attr(path, mode="r"):
    """The whole attribute and 0, or None and the errno."""
    try:
        with open(path, mode) as f:
            return f.read(), 0
    except OSError as ex:
        return None, ex.errno


def tsm_cases(tsm, guest_vmpl):
    if not os.path.isdir(tsm):
        skip("configfs-tsm", f"{tsm} does not exist (softsev exec --tsm)")
        return
    entry = tempfile.mkdtemp(dir=tsm)
    try:
        provider, e = read_attr(os.path.join(entry, "provider"))
        check("tsm provider", provider == "sev_guest\n", f"{provider!r} errno={e}")
        e = write_attr(os.path.join(entry, "privlevel"), b"4\n")
        check("tsm privlevel 4 -> EINVAL", e == errno.EINVAL, f"errno={e}")
        if guest_vmpl > 0:
            e = write_attr(os.path.join(entry, "privlevel"), str(guest_vmpl - 1).encode())
            check("tsm privlevel below the floor -> EINVAL", e == errno.EINVAL, f"errno={e}")
        e = write_attr(os.path.join(entry, "privlevel"), bytes([guest_vmpl]))
        check("tsm privlevel as a raw byte -> EINVAL", e == errno.EINVAL, f"errno={e}")
        _, e = read_attr(os.path.join(entry, "outblob"), "rb")
        check("tsm outblob without inblob -> EINVAL", e == errno.EINVAL, f"errno={e}")
        _, e = read_attr(os.path.join(entry, "inblob"), "rb")
        check("tsm read of inblob -> EACCES", e == errno.EACCES, f"errno={e}")
        gen, e = read_attr(os.path.join(entry, "generation"))
        check("tsm generation after refused writes", gen == "0\n", f"{gen!r} errno={e}")
    finally:
        os.rmdir(entry)
    check("tsm rmdir of the entry", not os.path.exists(entry))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="/dev/sev-guest")
    ap.add_argument("--vmpl", type=int, default=0)
    ap.add_argument("--tsm", default="/sys/kernel/config/tsm/report")
    a = ap.parse_args()
    try:
        fd = os.open(a.device, os.O_RDWR)
    except OSError as ex:
        print(f"cannot open {a.device}: {ex}", file=sys.stderr)
        return 2
    try:
        ioctl_cases(fd, a.vmpl)
    finally:
        os.close(fd)
    tsm_cases(a.tsm, a.vmpl)
    print(f"{len(FAILED)} failed" if FAILED else "all passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
