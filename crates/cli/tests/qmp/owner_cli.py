"""The guest owner's flow against `softsev run ... -qmp unix:SOCK,server=on,wait=off -S`
with QEMU's `qemu.qmp` client and a secret packet built as sevctl builds it
(AES-128-CTR with the TEK, HMAC-SHA256 with the TIK over 0x01 ‖ flags ‖ iv ‖ lengths ‖
ciphertext ‖ measure; no session, so TEK = TIK = 0). Prints one line for the test.

Usage: owner_cli.py SOCKET SECRET_HEX
"""
import asyncio, base64, hmac, hashlib, sys, struct
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from qemu.qmp import QMPClient

async def main(sock, secret_hex):
    qmp = QMPClient("owner")
    for _ in range(100):
        try:
            await qmp.connect(sock); break
        except Exception:
            await asyncio.sleep(0.05)
    st = await qmp.execute("query-status")
    sev = await qmp.execute("query-sev")
    blob = base64.b64decode((await qmp.execute("query-sev-launch-measure"))["data"])
    secret = bytes.fromhex(secret_hex)
    tek = tik = bytes(16)
    iv = bytes(range(16))
    enc = Cipher(algorithms.AES(tek), modes.CTR(iv)).encryptor()
    ct = enc.update(secret) + enc.finalize()
    n = len(ct)
    mac = hmac.new(tik, b"\x01" + struct.pack("<I", 0) + iv + struct.pack("<II", n, n) + ct + blob[:32], hashlib.sha256).digest()
    hdr = struct.pack("<I", 0) + iv + mac
    await qmp.execute("sev-inject-launch-secret", {"packet-header": base64.b64encode(hdr).decode(), "secret": base64.b64encode(ct).decode()})
    dump = await qmp.execute("human-monitor-command", {"command-line": "xp /16xb 0x80c000"})
    await qmp.execute("cont")
    ev = await asyncio.wait_for(qmp.events.get(), 5)
    sev2 = await qmp.execute("query-sev")
    await qmp.execute("quit")
    try:
        await qmp.disconnect()
    except EOFError:
        pass
    print(st, sev["state"], sev2["state"], ev["event"], repr(dump))

asyncio.run(main(sys.argv[1], sys.argv[2]))
