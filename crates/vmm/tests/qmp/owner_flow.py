"""The guest owner's QMP flow, driven by the real `qemu.qmp` client (PyPI) against
softsev's QMP socket: paused start, measurement, owner check, secret, cont, quit.

Usage: owner_flow.py SOCKET EXPECTED_MEASURE_B64 HEADER_B64 SECRET_B64 SECRET_HEX SECRET_GPA
Prints one JSON object with what it saw; exits non-zero on any mismatch.
"""

import asyncio
import base64
import json
import sys

from qemu.qmp import ExecuteError, QMPClient


async def main(sock, want_measure, header, secret, plain_hex, secret_gpa):
    qmp = QMPClient("softsev-owner")
    await qmp.connect(sock)
    seen = {"greeting": dict(qmp.greeting._raw) if qmp.greeting else None}

    status = await qmp.execute("query-status")
    assert status == {"running": False, "status": "prelaunch"}, status
    sev = await qmp.execute("query-sev")
    assert sev["state"] == "launch-secret" and sev["sev-type"] == "sev", sev

    blob = base64.b64decode((await qmp.execute("query-sev-launch-measure"))["data"])
    assert len(blob) == 48, len(blob)
    assert blob[:32] == base64.b64decode(want_measure), "measurement mismatch"

    try:
        await qmp.execute("query-sev-attestation-report", {"mnonce": "AAA="})
        raise AssertionError("a 2-byte mnonce was accepted")
    except ExecuteError as e:
        assert e.error.error.class_ == "GenericError", e.error.error.class_
        assert e.error.error.desc == "SEV: mnonce must be 16 bytes (got 2)", e.error.error.desc
        seen["error"] = {"class": e.error.error.class_, "desc": e.error.error.desc}

    await qmp.execute("sev-inject-launch-secret", {"packet-header": header, "secret": secret})

    await qmp.execute("cont")
    event = await asyncio.wait_for(qmp.events.get(), 5)
    assert event["event"] == "RESUME", event
    assert set(event["timestamp"]) == {"seconds", "microseconds"}, event
    status = await qmp.execute("query-status")
    assert status == {"running": True, "status": "running"}, status

    dump = await qmp.execute("human-monitor-command", {"command-line": f"xp /16xb {secret_gpa}"})
    got = "".join(t[2:] for t in dump.split() if t.startswith("0x"))
    assert got == plain_hex, (got, plain_hex)
    seen["xp"] = dump

    await qmp.execute("quit")
    event = await asyncio.wait_for(qmp.events.get(), 5)
    assert event["event"] == "SHUTDOWN", event
    assert event["data"] == {"guest": False, "reason": "host-qmp-quit"}, event
    # QEMU exits after quit: the reader sees EOF, which disconnect() re-raises (QEMU's
    # own python/qemu/machine ignores it the same way).
    try:
        await qmp.disconnect()
    except EOFError:
        pass
    seen["ok"] = True
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
