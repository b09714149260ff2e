"""A live migration between two `softsev run` processes driven with QEMU's `qemu.qmp`
client, as a management layer drives QEMU with the SEV live-migration series: the
target was started with `-incoming defer`; its platform's PDH and PEK ‖ OCA ‖ CEK come
from `query-sev-capabilities`, AMD's ASK ‖ ARK from the source run's certs/ask-ark.cert
(same product); `migrate-set-parameters` {sev-pdh, sev-plat-cert, sev-amd-cert} on the
source, `migrate-incoming unix:M` on the target, `migrate unix:M` on the source; then
query-migrate, MIGRATION events and the run states on both sides, and `quit`.
Prints one JSON line for the test.

Usage: migrate_cli.py SOURCE_SOCK TARGET_SOCK STREAM_SOCK ASK_ARK_FILE
"""
import asyncio, base64, json, os, sys
from qemu.qmp import QMPClient

async def connect(name, sock):
    c = QMPClient(name)
    for _ in range(200):
        try:
            await c.connect(sock)
            return c
        except Exception:
            await asyncio.sleep(0.05)
    raise SystemExit(f"cannot connect to {sock}")

async def main(src_sock, dst_sock, stream_sock, ask_ark):
    src = await connect("source", src_sock)
    dst = await connect("target", dst_sock)
    out = {}
    out["target_status_before"] = (await dst.execute("query-status"))["status"]
    caps = await dst.execute("query-sev-capabilities")
    with open(ask_ark, "rb") as f:
        amd = base64.b64encode(f.read()).decode()
    await src.execute("migrate-set-parameters", {
        "sev-pdh": caps["pdh"], "sev-plat-cert": caps["cert-chain"], "sev-amd-cert": amd,
        "max-bandwidth": 256 << 20, "downtime-limit": 100})
    params = await src.execute("query-migrate-parameters")
    out["params_ok"] = params["sev-pdh"] == caps["pdh"] and params["downtime-limit"] == 100
    incoming = asyncio.create_task(dst.execute("migrate-incoming", {"uri": "unix:" + stream_sock}))
    for _ in range(200):
        if os.path.exists(stream_sock):
            break
        await asyncio.sleep(0.02)
    await src.execute("migrate", {"uri": "unix:" + stream_sock})
    await incoming
    info = await src.execute("query-migrate")
    out["source_migration"] = info["status"]
    out["transferred"] = info["ram"]["transferred"]
    out["source_status"] = (await src.execute("query-status"))["status"]
    events = []
    while not src.events.empty():
        e = await src.events.get()
        if e["event"] == "MIGRATION":
            events.append(e["data"]["status"])
    out["source_events"] = events
    out["target_status"] = (await dst.execute("query-status"))["status"]
    out["target_sev"] = (await dst.execute("query-sev"))["state"]
    for c in (src, dst):
        await c.execute("quit")
        try:
            await c.disconnect()
        except EOFError:
            pass
    print(json.dumps(out))

asyncio.run(main(*sys.argv[1:5]))
