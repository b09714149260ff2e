//! Serve softsev's QMP monitor over the in-memory SEV model, for trying a client by
//! hand: `cargo run -p softsev-vmm --example qmp_model -- /tmp/qmp.sock [POLICY]`, then
//! e.g. `socat - UNIX-CONNECT:/tmp/qmp.sock` or QEMU's `qmp-shell`. The guest starts
//! paused (as with `-S`) in launch-secret, a 4 KiB "firmware" measured, no session
//! (TEK = TIK = 0), the OVMF secret area at 0x8000. Ends on `quit`.

use softsev_vmm::qmp::model::{ModelConfig, SevModel};
use softsev_vmm::qmp::server::{QmpServer, ServerThread};
use softsev_vmm::qmp::{QmpVersion, Session};
use std::sync::{Arc, Mutex};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: qmp_model SOCKET [POLICY]")?;
    let policy = match args.next() {
        Some(p) => u32::from_str_radix(p.trim_start_matches("0x"), 16)?,
        None => 0x1,
    };
    let mut model = SevModel::new(ModelConfig {
        policy,
        handle: 1,
        api: (1, 55, 25),
        ram_size: 16 << 20,
        secret_area: Some((0x8000, 0xC00)),
        session: None,
        seed: b"qmp_model example".to_vec(),
        certs: None,
        cbitpos: 51,
    });
    model.launch_update_data(0x10_0000, &[0x90; 0x1000])?;
    model.launch_measure()?;
    let server = QmpServer::bind(path.as_ref())?;
    eprintln!("QMP on {path} (policy {policy:#x}); quit ends it");
    let session = Arc::new(Mutex::new(Session::new(model, true, QmpVersion::default())));
    let t = ServerThread::spawn(server, session, None);
    while !t.finished() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    t.stop()?;
    Ok(())
}
