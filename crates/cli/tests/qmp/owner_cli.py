"""The guest owner's flow against `softsev run ... -qmp unix:SOCK,server=on,wait=off -S`
with QEMU's `qemu.qmp` client and a secret packet built as sevctl builds it
(AES-128-CTR with the TEK, HMAC-SHA256 with the TIK over 0x01 ‖ flags ‖ iv ‖ lengths ‖
ciphertext ‖ measure; no session, so TEK = TIK = 0). The secret is a table as sevctl
and Linux's efi_secret lay it out (header GUID 1e74f542-… ‖ u32 len, one entry GUID ‖
u32 len ‖ data, padded to 16 bytes; sev-legacy.md §8.3). After `cont` the guest boots
and reads it; after `quit` the run's summary.json (in OUT_DIR) must carry SHA-256 of
exactly the plaintext packet built here. `query-sev-capabilities` must return a PDH
that decodes as an SEV certificate of usage PDH (0x1003) with an ECDH key, a 3-cert
chain and a 64-byte cpu0-id (the CEK in that chain is the platform's, not the KDS's
ASK-signed one, so the chain is not verified here). Prints one line for the test.

With a fourth argument (the sevctl binary), the packet is the one `sevctl secret build`
makes from the measurement blob (random IV) instead, so the guest reads a secret sealed
by sevctl itself; its decrypted payload must equal the table built here.

Usage: owner_cli.py SOCKET SECRET_HEX OUT_DIR [SEVCTL]
"""
import asyncio, base64, hmac, hashlib, json, os, subprocess, sys, struct, tempfile, time, uuid
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from qemu.qmp import QMPClient

def secret_table(data):
    entry_guid = uuid.UUID("736869e5-84f0-4973-92ec-06879ce3da0b").bytes_le
    header_guid = uuid.UUID("1e74f542-71dd-4d66-963e-ef4287ff173b").bytes_le
    entry = entry_guid + struct.pack("<I", 20 + len(data)) + data
    table = header_guid + struct.pack("<I", 20 + len(entry)) + entry
    return table + bytes(-len(table) % 16)

async def main(sock, secret_hex, out_dir, sevctl=None):
    qmp = QMPClient("owner")
    for _ in range(100):
        try:
            await qmp.connect(sock); break
        except Exception:
            await asyncio.sleep(0.05)
    st = await qmp.execute("query-status")
    sev = await qmp.execute("query-sev")
    blob = base64.b64decode((await qmp.execute("query-sev-launch-measure"))["data"])
    caps = await qmp.execute("query-sev-capabilities")
    pdh = base64.b64decode(caps["pdh"])
    chain = base64.b64decode(caps["cert-chain"])
    cpu0 = base64.b64decode(caps["cpu0-id"])
    usage, algo = struct.unpack_from("<II", pdh, 8)
    assert len(pdh) == 0x824 and usage == 0x1003 and algo in (3, 0x103), (len(pdh), hex(usage), hex(algo))
    assert len(chain) == 3 * 0x824, len(chain)
    assert [struct.unpack_from("<I", chain, i * 0x824 + 8)[0] for i in range(3)] == [0x1002, 0x1001, 0x1004]
    assert len(cpu0) == 64 and caps["cbitpos"] == 51 and caps["reduced-phys-bits"] == 1, caps
    with open(os.path.join(out_dir, "..", "pdh.cert"), "wb") as f:
        f.write(pdh)
    secret = secret_table(bytes.fromhex(secret_hex))
    tek = tik = bytes(16)
    iv = bytes(range(16))
    enc = Cipher(algorithms.AES(tek), modes.CTR(iv)).encryptor()
    ct = enc.update(secret) + enc.finalize()
    n = len(ct)
    mac = hmac.new(tik, b"\x01" + struct.pack("<I", 0) + iv + struct.pack("<II", n, n) + ct + blob[:32], hashlib.sha256).digest()
    hdr = struct.pack("<I", 0) + iv + mac
    via = "script"
    if sevctl:
        with tempfile.TemporaryDirectory() as d:
            p = lambda n: os.path.join(d, n)
            for n, b in (("tik.bin", tik), ("tek.bin", tek), ("blob.bin", blob), ("s.bin", bytes.fromhex(secret_hex))):
                with open(p(n), "wb") as f:
                    f.write(b)
            subprocess.run([sevctl, "secret", "build", "--tik", p("tik.bin"), "--tek", p("tek.bin"),
                            "--launch-measure-blob", p("blob.bin"),
                            "--secret", "736869e5-84f0-4973-92ec-06879ce3da0b:" + p("s.bin"),
                            p("hdr.bin"), p("payload.bin")], check=True, capture_output=True)
            hdr = open(p("hdr.bin"), "rb").read()
            ct = open(p("payload.bin"), "rb").read()
        dec = Cipher(algorithms.AES(tek), modes.CTR(hdr[4:20])).decryptor()
        plain = dec.update(ct) + dec.finalize()
        assert plain == secret, (plain.hex(), secret.hex())
        assert hdr[4:20] != iv  # sevctl drew its own IV
        via = "sevctl"
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
    summary = os.path.join(out_dir, "summary.json")
    for _ in range(200):
        if os.path.exists(summary):
            try:
                with open(summary) as f:
                    s = json.load(f)
                break
            except ValueError:
                pass
        time.sleep(0.05)
    else:
        raise SystemExit("no summary.json after quit")
    want = hashlib.sha256(secret).hexdigest()
    got = (s.get("booted_guest") or {}).get("secret_sha256")
    assert got == want, (got, want, s.get("guest_boot"))
    print(st, sev["state"], sev2["state"], ev["event"], repr(dump), "packet-by-" + via, "secret-sha256-ok pdh-ok")

asyncio.run(main(*sys.argv[1:5]))
