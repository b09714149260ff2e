//! One QMP monitor's protocol state (QEMU `monitor/qmp.c`, `qapi/qmp-dispatch.c`,
//! `monitor/qmp-cmds-control.c`, `qapi/qobject-input-visitor.c`).

use super::json::{Chunk, QValue, Streamer, parse_value};
use super::{QmpError, QmpGuest, RunState, SevState, hmp};
use crate::config::glib_base64_decode;
use crate::migration::{
    MAX_DOWNTIME_LIMIT_MS, MigrationInfo, MigrationParameters, MigrationStatus, MigrationUri,
};
use base64::Engine;
use std::time::{SystemTime, UNIX_EPOCH};

/// The QEMU version the greeting and `query-version` report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QmpVersion {
    /// Major.
    pub major: i64,
    /// Minor.
    pub minor: i64,
    /// Micro.
    pub micro: i64,
    /// `package` (QEMU: the configure `--with-pkgversion`, empty by default).
    pub package: String,
}

impl Default for QmpVersion {
    /// 9.2.0: the schema modelled here (SevInfo as a union with `sev-type`,
    /// StatusInfo without `singlestep`, `legacy-vm-type` as OnOffAuto).
    fn default() -> Self {
        QmpVersion {
            major: 9,
            minor: 2,
            micro: 0,
            package: String::new(),
        }
    }
}

impl QmpVersion {
    fn value(&self) -> QValue {
        QValue::dict([
            (
                "qemu",
                QValue::dict([
                    ("major", QValue::Int(self.major)),
                    ("minor", QValue::Int(self.minor)),
                    ("micro", QValue::Int(self.micro)),
                ]),
            ),
            ("package", QValue::str(self.package.clone())),
        ])
    }
}

/// The commands this monitor has, in `query-commands` order.
const COMMANDS: &[&str] = &[
    "qmp_capabilities",
    "query-commands",
    "query-version",
    "query-status",
    "query-sev",
    "query-sev-capabilities",
    "query-sev-launch-measure",
    "sev-inject-launch-secret",
    "query-sev-attestation-report",
    "human-monitor-command",
    "cont",
    "stop",
    "quit",
    "migrate-set-parameters",
    "query-migrate-parameters",
    "migrate",
    "query-migrate",
    "migrate_cancel",
    "migrate-incoming",
];

/// A QAPI member type, for argument checking.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
    U64,
    /// `['QMPCapability']`.
    CapList,
    /// `bool`.
    Bool,
    /// `StrOrNull` (a string, or `null`, which QEMU's migration code turns into "").
    StrOrNull,
    /// A member softsev refuses with a reason (accepted by QEMU's schema).
    Refused(&'static str),
}

struct Arg {
    name: &'static str,
    ty: Ty,
    optional: bool,
}

const fn req(name: &'static str, ty: Ty) -> Arg {
    Arg {
        name,
        ty,
        optional: false,
    }
}

const fn opt(name: &'static str, ty: Ty) -> Arg {
    Arg {
        name,
        ty,
        optional: true,
    }
}

const CAPS_ARGS: &[Arg] = &[opt("enable", Ty::CapList)];
const SECRET_ARGS: &[Arg] = &[
    req("packet-header", Ty::Str),
    req("secret", Ty::Str),
    opt("gpa", Ty::U64),
];
const REPORT_ARGS: &[Arg] = &[req("mnonce", Ty::Str)];
const HMP_ARGS: &[Arg] = &[req("command-line", Ty::Str), opt("cpu-index", Ty::Int)];
/// `MigrateSetParameters` members softsev models (QEMU `qapi/migration.json`; the
/// `sev-*` members from the SEV live-migration series). QEMU's visitor walks the
/// members in schema order: `max-bandwidth` and `downtime-limit` come before the
/// series' members, which were appended at the end.
const MIG_PARAM_ARGS: &[Arg] = &[
    opt("max-bandwidth", Ty::U64),
    opt("downtime-limit", Ty::U64),
    opt("sev-pdh", Ty::StrOrNull),
    opt("sev-plat-cert", Ty::StrOrNull),
    opt("sev-amd-cert", Ty::StrOrNull),
];
/// `migrate` (QEMU 9.2: `uri`, `channels`, `detach`, `resume`).
const MIGRATE_ARGS: &[Arg] = &[
    opt("uri", Ty::Str),
    opt(
        "channels",
        Ty::Refused("softsev takes the migration address as 'uri'"),
    ),
    opt("detach", Ty::Bool),
    opt(
        "resume",
        Ty::Refused("postcopy recovery does not apply: softsev migrates by pre-copy only"),
    ),
];
/// `migrate-incoming` (QEMU 9.2: `uri`, `channels`, `exit-on-error`).
const INCOMING_ARGS: &[Arg] = &[
    opt("uri", Ty::Str),
    opt(
        "channels",
        Ty::Refused("softsev takes the migration address as 'uri'"),
    ),
    opt("exit-on-error", Ty::Bool),
];

fn schema(command: &str) -> &'static [Arg] {
    match command {
        "qmp_capabilities" => CAPS_ARGS,
        "sev-inject-launch-secret" => SECRET_ARGS,
        "query-sev-attestation-report" => REPORT_ARGS,
        "human-monitor-command" => HMP_ARGS,
        "migrate-set-parameters" => MIG_PARAM_ARGS,
        "migrate" => MIGRATE_ARGS,
        "migrate-incoming" => INCOMING_ARGS,
        _ => &[],
    }
}

/// A checked argument value.
#[derive(Debug)]
enum ArgVal {
    Str(String),
    Int(i64),
    U64(u64),
    Caps(Vec<String>),
    Bool(bool),
}

/// The QObject input visitor's checks, in its order: each member of the schema in
/// order (missing, wrong type), then members left over (unexpected).
fn check_args(
    command: &str,
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(&'static str, ArgVal)>, QmpError> {
    let mut out = Vec::new();
    for a in schema(command) {
        let Some(v) = args.get(a.name) else {
            if a.optional {
                continue;
            }
            return Err(QmpError::generic(format!(
                "Parameter '{}' is missing",
                a.name
            )));
        };
        let bad_type = |expected: &str| {
            QmpError::generic(format!(
                "Invalid parameter type for '{}', expected: {expected}",
                a.name
            ))
        };
        let val = match a.ty {
            Ty::Str => ArgVal::Str(v.as_str().ok_or_else(|| bad_type("string"))?.to_string()),
            Ty::Int => ArgVal::Int(v.as_i64().ok_or_else(|| bad_type("integer"))?),
            // qobject_input_type_uint64: negative integers are accepted for backward
            // compatibility (two's complement), anything else "expects uint64".
            Ty::U64 => ArgVal::U64(
                v.as_u64()
                    .or_else(|| v.as_i64().map(|i| i as u64))
                    .ok_or_else(|| {
                        QmpError::generic(format!("Parameter '{}' expects uint64", a.name))
                    })?,
            ),
            Ty::Bool => ArgVal::Bool(v.as_bool().ok_or_else(|| bad_type("boolean"))?),
            // The generated alternate visitor: a string or null, else "expected:
            // StrOrNull"; migration.c rewrites null to "".
            Ty::StrOrNull => match v {
                serde_json::Value::Null => ArgVal::Str(String::new()),
                serde_json::Value::String(s) => ArgVal::Str(s.clone()),
                _ => return Err(bad_type("StrOrNull")),
            },
            Ty::Refused(reason) => {
                return Err(QmpError::generic(format!(
                    "Parameter '{}' is not supported by softsev: {reason}",
                    a.name
                )));
            }
            Ty::CapList => {
                let list = v.as_array().ok_or_else(|| bad_type("array"))?;
                let mut caps = Vec::new();
                for (i, c) in list.iter().enumerate() {
                    let s = c.as_str().ok_or_else(|| {
                        QmpError::generic(format!(
                            "Invalid parameter type for '{}[{i}]', expected: string",
                            a.name
                        ))
                    })?;
                    if s != "oob" {
                        // input_type_enum names a list element "null" (no name).
                        return Err(QmpError::generic(format!(
                            "Parameter 'null' does not accept value '{s}'"
                        )));
                    }
                    caps.push(s.to_string());
                }
                ArgVal::Caps(caps)
            }
        };
        out.push((a.name, val));
    }
    let known = schema(command);
    if let Some(k) = args
        .keys()
        .find(|k| !known.iter().any(|a| a.name == k.as_str()))
    {
        return Err(QmpError::generic(format!("Parameter '{k}' is unexpected")));
    }
    Ok(out)
}

fn arg_str<'a>(args: &'a [(&'static str, ArgVal)], name: &str) -> Option<&'a str> {
    args.iter().find_map(|(n, v)| match v {
        ArgVal::Str(s) if *n == name => Some(s.as_str()),
        _ => None,
    })
}

fn arg_u64(args: &[(&'static str, ArgVal)], name: &str) -> Option<u64> {
    args.iter().find_map(|(n, v)| match v {
        ArgVal::U64(x) if *n == name => Some(*x),
        _ => None,
    })
}

fn arg_int(args: &[(&'static str, ArgVal)], name: &str) -> Option<i64> {
    args.iter().find_map(|(n, v)| match v {
        ArgVal::Int(x) if *n == name => Some(*x),
        _ => None,
    })
}

fn arg_bool(args: &[(&'static str, ArgVal)], name: &str) -> Option<bool> {
    args.iter().find_map(|(n, v)| match v {
        ArgVal::Bool(x) if *n == name => Some(*x),
        _ => None,
    })
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// One QMP monitor over a [`QmpGuest`]: feed it the client's bytes, send what it
/// returns. Every message it produces is a line ending in `\r\n`, as QEMU's monitor
/// writes them.
#[derive(Debug)]
pub struct Session<G> {
    guest: G,
    version: QmpVersion,
    negotiated: bool,
    oob: bool,
    state: RunState,
    streamer: Streamer,
    closed: bool,
    mig_params: MigrationParameters,
    mig_info: MigrationInfo,
    /// `-incoming defer`: `migrate-incoming` may run (once).
    incoming_deferred: bool,
    incoming_started: bool,
    /// `cont` during `inmigrate`, or no `-S`: run once the incoming migration is done.
    autostart: bool,
    /// Events to send after the current command's reply.
    post: Vec<String>,
}

impl<G: QmpGuest> Session<G> {
    /// A monitor for `guest`; with `start_paused` (`-S`) the run state is
    /// `prelaunch`, else `running`.
    pub fn new(guest: G, start_paused: bool, version: QmpVersion) -> Self {
        Session {
            guest,
            version,
            negotiated: false,
            oob: false,
            state: if start_paused {
                RunState::Prelaunch
            } else {
                RunState::Running
            },
            streamer: Streamer::new(),
            closed: false,
            mig_params: MigrationParameters::default(),
            mig_info: MigrationInfo::default(),
            incoming_deferred: false,
            incoming_started: false,
            autostart: !start_paused,
            post: Vec::new(),
        }
    }

    /// A monitor for the target of a migration (`-incoming`): the run state is
    /// `inmigrate`; with `deferred` (`-incoming defer`) `migrate-incoming` starts the
    /// receive, else the caller does ([`Session::incoming`]). Without `start_paused`
    /// (`-S`) the guest runs when the stream is complete.
    pub fn new_incoming(guest: G, start_paused: bool, deferred: bool, version: QmpVersion) -> Self {
        let mut s = Session::new(guest, start_paused, version);
        s.state = RunState::InMigrate;
        s.incoming_deferred = deferred;
        s
    }

    /// The migration parameters.
    pub fn migration_parameters(&self) -> &MigrationParameters {
        &self.mig_params
    }

    /// The last migration's `query-migrate` view.
    pub fn migration_info(&self) -> &MigrationInfo {
        &self.mig_info
    }

    /// Receive the guest from `uri` (`-incoming URI` before the monitor serves, or
    /// `migrate-incoming`). Returns the `MIGRATION` events; on success the run state
    /// is `running` (autostart) or `paused`.
    pub fn incoming(&mut self, uri: &MigrationUri) -> Result<Vec<String>, QmpError> {
        let mut events = Vec::new();
        self.incoming_started = true;
        let mut statuses = Vec::new();
        let r = self.guest.migrate_in(uri, &mut |st| statuses.push(st));
        for st in statuses {
            events.push(migration_event(st));
        }
        match r {
            Ok(info) => {
                self.mig_info = info;
                if self.autostart {
                    self.guest.start()?;
                    self.state = RunState::Running;
                    events.push(event("RESUME", None));
                } else {
                    self.state = RunState::Paused;
                }
                Ok(events)
            }
            Err(e) => {
                self.mig_info = MigrationInfo {
                    status: MigrationStatus::Failed,
                    error_desc: Some(e.desc.clone()),
                    ..MigrationInfo::default()
                };
                events.push(migration_event(MigrationStatus::Failed));
                Err(e)
            }
        }
    }

    /// The guest.
    pub fn guest(&self) -> &G {
        &self.guest
    }

    /// The guest, mutably.
    pub fn guest_mut(&mut self) -> &mut G {
        &mut self.guest
    }

    /// The run state.
    pub fn run_state(&self) -> RunState {
        self.state
    }

    /// Whether `quit` was executed: the monitor closes the connection.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// A client connected: the greeting, and capability negotiation starts over
    /// (QEMU `monitor_qmp_event` on CHR_EVENT_OPENED).
    pub fn connect(&mut self) -> String {
        self.negotiated = false;
        self.oob = false;
        self.streamer = Streamer::new();
        let greeting = QValue::dict([(
            "QMP",
            QValue::dict([
                ("version", self.version.value()),
                ("capabilities", QValue::List(vec![QValue::str("oob")])),
            ]),
        )]);
        line(&greeting)
    }

    /// The client's bytes; returns the replies and events to send, in order.
    pub fn feed(&mut self, data: &[u8]) -> Vec<String> {
        let mut chunks = Vec::new();
        self.streamer.feed(data, &mut chunks);
        let mut out = Vec::new();
        for c in chunks {
            if self.closed {
                break;
            }
            match c {
                Chunk::Error(e) => out.push(line(&error_response(&QmpError::generic(e), None))),
                Chunk::Value(bytes) => match parse_value(&bytes) {
                    Err(e) => out.push(line(&error_response(&QmpError::generic(e), None))),
                    Ok(v) => self.request(&v, &mut out),
                },
            }
        }
        out
    }

    /// Events that happened outside a command (the guest shut itself down).
    pub fn poll_events(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if self.guest.take_guest_shutdown() && self.state != RunState::Shutdown {
            self.state = RunState::Shutdown;
            out.push(event(
                "SHUTDOWN",
                Some(QValue::dict([
                    ("guest", QValue::Bool(true)),
                    ("reason", QValue::str("guest-shutdown")),
                ])),
            ));
        }
        out
    }

    fn request(&mut self, v: &serde_json::Value, out: &mut Vec<String>) {
        let Some(dict) = v.as_object() else {
            let e = QmpError::generic("QMP input must be a JSON object");
            out.push(line(&error_response(&e, None)));
            return;
        };
        let id = dict.get("id").map(QValue::from_json);
        let rsp = match self.dispatch(dict, out) {
            Ok(r) => {
                let mut d = QValue::dict([("return", r)]);
                if let Some(id) = &id {
                    d.put("id", id.clone());
                }
                d
            }
            Err(e) => error_response(&e, id.as_ref()),
        };
        out.push(line(&rsp));
        out.append(&mut self.post);
        // `quit`: the reply, then SHUTDOWN, then QEMU exits and the socket closes.
        if self.closed {
            out.push(event(
                "SHUTDOWN",
                Some(QValue::dict([
                    ("guest", QValue::Bool(false)),
                    ("reason", QValue::str("host-qmp-quit")),
                ])),
            ));
        }
    }

    /// `qmp_dispatch` with the negotiation-mode rewrite of `monitor_qmp_dispatch`.
    fn dispatch(
        &mut self,
        dict: &serde_json::Map<String, serde_json::Value>,
        events: &mut Vec<String>,
    ) -> Result<QValue, QmpError> {
        let r = self.dispatch_inner(dict, events);
        match r {
            Err(e) if !self.negotiated && e.class == super::ErrorClass::CommandNotFound => Err(
                QmpError::not_found("Expecting capabilities negotiation with 'qmp_capabilities'"),
            ),
            r => r,
        }
    }

    fn dispatch_inner(
        &mut self,
        dict: &serde_json::Map<String, serde_json::Value>,
        events: &mut Vec<String>,
    ) -> Result<QValue, QmpError> {
        // qmp_dispatch_check_obj, walking the members in QDict order as QEMU does (so
        // a request with several faults reports the one QEMU reports).
        let mut members: Vec<(&String, &serde_json::Value)> = dict.iter().collect();
        members.sort_by_key(|(k, _)| super::json::qdict_bucket(k));
        let mut exec_key: Option<&str> = None;
        for (k, v) in members {
            match k.as_str() {
                "execute" | "exec-oob" if k == "execute" || self.oob => {
                    if !v.is_string() {
                        return Err(QmpError::generic(format!(
                            "QMP input member '{k}' must be a string"
                        )));
                    }
                    if let Some(first) = exec_key {
                        return Err(QmpError::generic(format!(
                            "QMP input member '{k}' clashes with '{first}'"
                        )));
                    }
                    exec_key = Some(k);
                }
                "arguments" => {
                    if !v.is_object() {
                        return Err(QmpError::generic(
                            "QMP input member 'arguments' must be an object",
                        ));
                    }
                }
                "id" => {}
                _ => {
                    return Err(QmpError::generic(format!(
                        "QMP input member '{k}' is unexpected"
                    )));
                }
            }
        }
        let Some(key) = exec_key else {
            return Err(QmpError::generic("QMP input lacks member 'execute'"));
        };
        let command = dict.get(key).and_then(|v| v.as_str()).unwrap_or_default();
        let available = if self.negotiated {
            COMMANDS.contains(&command)
        } else {
            command == "qmp_capabilities"
        };
        if !available {
            return Err(QmpError::not_found(format!(
                "The command {command} has not been found"
            )));
        }
        if key == "exec-oob" {
            // Only migrate-recover, migrate-pause and x-oob-test allow OOB in QEMU.
            return Err(QmpError::generic(format!(
                "The command {command} does not support OOB"
            )));
        }
        let empty = serde_json::Map::new();
        let args = dict
            .get("arguments")
            .and_then(|a| a.as_object())
            .unwrap_or(&empty);
        let args = check_args(command, args)?;
        self.command(command, &args, events)
    }

    fn command(
        &mut self,
        command: &str,
        args: &[(&'static str, ArgVal)],
        events: &mut Vec<String>,
    ) -> Result<QValue, QmpError> {
        let empty = || QValue::Dict(Vec::new());
        match command {
            "qmp_capabilities" => {
                if self.negotiated {
                    return Err(QmpError::not_found(
                        "Capabilities negotiation is already complete, command ignored",
                    ));
                }
                let caps = args.iter().find_map(|(_, v)| match v {
                    ArgVal::Caps(c) => Some(c.clone()),
                    _ => None,
                });
                self.oob = caps.is_some_and(|c| c.iter().any(|x| x == "oob"));
                self.negotiated = true;
                Ok(empty())
            }
            "query-commands" => Ok(QValue::List(
                COMMANDS
                    .iter()
                    .map(|c| QValue::dict([("name", QValue::str(*c))]))
                    .collect(),
            )),
            "query-version" => Ok(self.version.value()),
            "query-status" => Ok(QValue::dict([
                ("running", QValue::Bool(self.state == RunState::Running)),
                ("status", QValue::str(self.state.as_str())),
            ])),
            "query-sev" => Ok(sev_info_value(&self.guest.sev_info())),
            "query-sev-capabilities" => {
                let c = self.guest.capabilities()?;
                Ok(QValue::dict([
                    ("pdh", QValue::str(b64(&c.pdh))),
                    ("cert-chain", QValue::str(b64(&c.cert_chain))),
                    ("cpu0-id", QValue::str(b64(&c.cpu0_id))),
                    ("cbitpos", QValue::Int(i64::from(c.cbitpos))),
                    (
                        "reduced-phys-bits",
                        QValue::Int(i64::from(c.reduced_phys_bits)),
                    ),
                ]))
            }
            "query-sev-launch-measure" => {
                let info = self.guest.sev_info();
                match self.guest.launch_measure() {
                    Some(m) if info.enabled && info.state >= SevState::LaunchSecret => {
                        Ok(QValue::dict([("data", QValue::str(b64(&m)))]))
                    }
                    _ => Err(QmpError::generic("SEV launch measurement is not available")),
                }
            }
            "sev-inject-launch-secret" => {
                self.inject_secret(
                    arg_str(args, "packet-header").unwrap_or_default(),
                    arg_str(args, "secret").unwrap_or_default(),
                    arg_u64(args, "gpa"),
                )?;
                Ok(empty())
            }
            "query-sev-attestation-report" => {
                if !self.guest.sev_info().enabled {
                    return Err(QmpError::generic("SEV is not enabled"));
                }
                let mnonce = arg_str(args, "mnonce").unwrap_or_default();
                let buf = glib_base64_decode(mnonce.as_bytes());
                let Ok(mnonce) = <[u8; 16]>::try_from(buf.as_slice()) else {
                    return Err(QmpError::generic(format!(
                        "SEV: mnonce must be 16 bytes (got {})",
                        buf.len()
                    )));
                };
                let report = self.guest.attestation_report(&mnonce)?;
                Ok(QValue::dict([("data", QValue::str(b64(&report)))]))
            }
            "human-monitor-command" => {
                let line = arg_str(args, "command-line").unwrap_or_default();
                let cpu = arg_int(args, "cpu-index");
                let out = hmp::run(&mut self.guest, self.state, line, cpu)?;
                Ok(QValue::str(out))
            }
            "cont" => {
                match self.state {
                    RunState::Running => {}
                    // qmp_cont: during an incoming migration, only remember to start.
                    RunState::InMigrate => self.autostart = true,
                    RunState::PostMigrate => {
                        return Err(QmpError::generic(
                            "SEV: the guest was migrated away (firmware state SENT); it \
                             cannot run here again",
                        ));
                    }
                    RunState::Shutdown => {
                        return Err(QmpError::generic(
                            "Resetting the Virtual Machine is required",
                        ));
                    }
                    RunState::Prelaunch | RunState::Paused => {
                        self.guest.start()?;
                        self.state = RunState::Running;
                        events.push(event("RESUME", None));
                    }
                }
                Ok(empty())
            }
            "stop" => {
                if self.state == RunState::Running {
                    self.guest.stop();
                    self.state = RunState::Paused;
                    events.push(event("STOP", None));
                }
                Ok(empty())
            }
            "migrate-set-parameters" => {
                self.set_parameters(args)?;
                Ok(empty())
            }
            "query-migrate-parameters" => Ok(parameters_value(&self.mig_params)),
            "query-migrate" => Ok(info_value(&self.mig_info)),
            "migrate_cancel" => Ok(empty()),
            "migrate" => {
                self.migrate(args, events)?;
                Ok(empty())
            }
            "migrate-incoming" => {
                if !self.incoming_deferred {
                    return Err(QmpError::generic(
                        "'-incoming' was not specified on the command line",
                    ));
                }
                if self.incoming_started {
                    return Err(QmpError::generic(
                        "The incoming migration has already been started",
                    ));
                }
                let Some(uri) = arg_str(args, "uri") else {
                    return Err(QmpError::generic(
                        "need either 'uri' or 'channels' argument",
                    ));
                };
                let uri = MigrationUri::parse(uri).map_err(QmpError::generic)?;
                // qmp_migrate_incoming returns once the channel is set up; the stream
                // is then read in the background. Here it is read before the reply,
                // and its events follow the reply.
                match self.incoming(&uri) {
                    Ok(mut ev) => {
                        self.post.append(&mut ev);
                        Ok(empty())
                    }
                    Err(e) => {
                        self.post.push(migration_event(MigrationStatus::Failed));
                        Err(e)
                    }
                }
            }
            "quit" => {
                self.guest.quit();
                self.state = RunState::Shutdown;
                self.closed = true;
                Ok(empty())
            }
            other => Err(QmpError::not_found(format!(
                "The command {other} has not been found"
            ))),
        }
    }

    /// `qmp_migrate_set_parameters`: check (`migrate_params_check`), then apply.
    fn set_parameters(&mut self, args: &[(&'static str, ArgVal)]) -> Result<(), QmpError> {
        let mut p = self.mig_params.clone();
        if let Some(d) = arg_u64(args, "downtime-limit") {
            if d > MAX_DOWNTIME_LIMIT_MS {
                return Err(QmpError::generic(
                    "Parameter 'downtime_limit' expects an integer in the range of 0 to 2000 \
                     seconds",
                ));
            }
            p.downtime_limit = d;
        }
        if let Some(b) = arg_u64(args, "max-bandwidth") {
            p.max_bandwidth = b;
        }
        for (name, slot) in [
            ("sev-pdh", &mut p.sev_pdh),
            ("sev-plat-cert", &mut p.sev_plat_cert),
            ("sev-amd-cert", &mut p.sev_amd_cert),
        ] {
            if let Some(v) = arg_str(args, name) {
                *slot = v.to_string();
            }
        }
        self.mig_params = p;
        Ok(())
    }

    /// `qmp_migrate` in QEMU's order: the address, a migration in progress, the
    /// blockers (`migration_is_blocked`), then the migration itself.
    fn migrate(
        &mut self,
        args: &[(&'static str, ArgVal)],
        events: &mut Vec<String>,
    ) -> Result<(), QmpError> {
        let Some(uri) = arg_str(args, "uri") else {
            return Err(QmpError::generic(
                "need either 'uri' or 'channels' argument",
            ));
        };
        let uri = MigrationUri::parse(uri).map_err(QmpError::generic)?;
        let _detach = arg_bool(args, "detach");
        if matches!(
            self.mig_info.status,
            MigrationStatus::Setup | MigrationStatus::Active | MigrationStatus::Device
        ) {
            return Err(QmpError::generic("There's a migration process in progress"));
        }
        if self.state == RunState::InMigrate {
            return Err(QmpError::generic(
                "Guest is waiting for an incoming migration",
            ));
        }
        if let Some(b) = self.guest.migration_blocker() {
            return Err(QmpError::generic(b));
        }
        let params = self.mig_params.clone();
        let mut statuses = Vec::new();
        let r = self
            .guest
            .migrate_out(&uri, &params, &mut |st| statuses.push(st));
        // The first status (setup) is reported before qmp_migrate returns; the rest
        // come after the reply.
        for (i, st) in statuses.iter().enumerate() {
            let e = migration_event(*st);
            if i == 0 {
                events.push(e);
            } else {
                self.post.push(e);
            }
        }
        match r {
            Ok(info) => {
                let done = info.status == MigrationStatus::Completed;
                self.mig_info = info;
                if done {
                    if self.state == RunState::Running {
                        self.post.insert(0, event("STOP", None));
                    }
                    self.state = RunState::PostMigrate;
                }
                Ok(())
            }
            Err(e) => {
                // The migration failed after it started: `migrate` itself succeeded
                // in QEMU (the failure is in query-migrate), unless nothing started.
                self.mig_info = MigrationInfo {
                    status: MigrationStatus::Failed,
                    error_desc: Some(e.desc.clone()),
                    ..MigrationInfo::default()
                };
                if statuses.is_empty() {
                    return Err(e);
                }
                if statuses.last() != Some(&MigrationStatus::Failed) {
                    self.post.push(migration_event(MigrationStatus::Failed));
                }
                Ok(())
            }
        }
    }

    /// `qmp_sev_inject_launch_secret` and `sev_inject_launch_secret`, in QEMU's order.
    fn inject_secret(
        &mut self,
        header: &str,
        secret: &str,
        gpa: Option<u64>,
    ) -> Result<(), QmpError> {
        let info = self.guest.sev_info();
        if !info.enabled {
            return Err(QmpError::generic("SEV not enabled for guest"));
        }
        let gpa = match gpa {
            Some(g) => g,
            None => match self.guest.secret_area() {
                Some((base, _)) => u64::from(base),
                None => {
                    return Err(QmpError::generic(
                        "SEV: no secret area found in OVMF, gpa must be specified.",
                    ));
                }
            },
        };
        if info.state != SevState::LaunchSecret {
            return Err(QmpError::generic(format!(
                "SEV: Not in correct state. (LSECRET) {:x}",
                info.state.index()
            )));
        }
        let hdr = glib_base64_decode(header.as_bytes());
        if hdr.is_empty() {
            return Err(QmpError::generic("SEV: Failed to decode sequence header"));
        }
        let data = glib_base64_decode(secret.as_bytes());
        if data.is_empty() {
            return Err(QmpError::generic("SEV: Failed to decode data"));
        }
        self.guest.inject_secret(&hdr, &data, gpa)
    }
}

/// `SevInfo` as the QAPI output visitor builds it (flat union: base, then the `sev`
/// branch's `policy` and `handle`).
fn sev_info_value(i: &super::SevInfo) -> QValue {
    QValue::dict([
        ("enabled", QValue::Bool(i.enabled)),
        ("api-major", QValue::Int(i64::from(i.api_major))),
        ("api-minor", QValue::Int(i64::from(i.api_minor))),
        ("build-id", QValue::Int(i64::from(i.build_id))),
        ("state", QValue::str(i.state.as_str())),
        ("sev-type", QValue::str("sev")),
        ("policy", QValue::Int(i64::from(i.policy))),
        ("handle", QValue::Int(i64::from(i.handle))),
    ])
}

/// `MIGRATION` (`migrate_set_state` → `qapi_event_send_migration`).
fn migration_event(st: MigrationStatus) -> String {
    event(
        "MIGRATION",
        Some(QValue::dict([("status", QValue::str(st.as_str()))])),
    )
}

fn u64v(x: u64) -> QValue {
    match i64::try_from(x) {
        Ok(i) => QValue::Int(i),
        Err(_) => QValue::UInt(x),
    }
}

/// `MigrationParameters` as `query-migrate-parameters` returns the members softsev
/// models (QEMU schema order; the SEV series' members last).
fn parameters_value(p: &MigrationParameters) -> QValue {
    QValue::dict([
        ("max-bandwidth", u64v(p.max_bandwidth)),
        ("downtime-limit", u64v(p.downtime_limit)),
        ("sev-pdh", QValue::str(p.sev_pdh.clone())),
        ("sev-plat-cert", QValue::str(p.sev_plat_cert.clone())),
        ("sev-amd-cert", QValue::str(p.sev_amd_cert.clone())),
    ])
}

/// `MigrationInfo` as `fill_source_migration_info` fills it: `status` alone before a
/// migration; `ram` and times once one ran; `error-desc` when it failed.
fn info_value(i: &MigrationInfo) -> QValue {
    let mut d = QValue::dict([("status", QValue::str(i.status.as_str()))]);
    if let Some(r) = &i.ram {
        d.put(
            "ram",
            QValue::dict([
                ("transferred", u64v(r.transferred)),
                ("remaining", u64v(r.remaining)),
                ("total", u64v(r.total)),
                ("duplicate", u64v(r.duplicate)),
                ("normal", u64v(r.normal)),
                ("normal-bytes", u64v(r.normal_bytes)),
                ("dirty-pages-rate", u64v(r.dirty_pages_rate)),
                ("mbps", QValue::Float(r.mbps)),
                ("dirty-sync-count", u64v(r.dirty_sync_count)),
                ("postcopy-requests", QValue::Int(0)),
                ("page-size", u64v(r.page_size)),
                ("multifd-bytes", QValue::Int(0)),
                ("pages-per-second", QValue::Int(0)),
                ("precopy-bytes", u64v(r.precopy_bytes)),
                ("downtime-bytes", u64v(r.downtime_bytes)),
                ("postcopy-bytes", QValue::Int(0)),
                ("dirty-sync-missed-zero-copy", QValue::Int(0)),
            ]),
        );
    }
    if let Some(t) = i.total_time_ms {
        d.put("total-time", u64v(t));
    }
    if let Some(t) = i.downtime_ms {
        d.put("downtime", u64v(t));
    }
    if let Some(t) = i.setup_time_ms {
        d.put("setup-time", u64v(t));
    }
    if let Some(e) = &i.error_desc {
        d.put("error-desc", QValue::str(e.clone()));
    }
    d
}

/// `qmp_error_response` plus the request's `id`.
fn error_response(e: &QmpError, id: Option<&QValue>) -> QValue {
    let mut d = QValue::dict([(
        "error",
        QValue::dict([
            ("class", QValue::str(e.class.as_str())),
            ("desc", QValue::str(e.desc.clone())),
        ]),
    )]);
    if let Some(id) = id {
        d.put("id", id.clone());
    }
    d
}

/// An event (`qmp_event_build_dict`: `event`, then `timestamp`, then `data`).
fn event(name: &str, data: Option<QValue>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut d = QValue::dict([
        ("event", QValue::str(name)),
        (
            "timestamp",
            QValue::dict([
                ("seconds", QValue::Int(now.as_secs() as i64)),
                ("microseconds", QValue::Int(i64::from(now.subsec_micros()))),
            ]),
        ),
    ]);
    if let Some(data) = data {
        d.put("data", data);
    }
    line(&d)
}

/// One monitor line: the JSON and QEMU's `\r\n` (monitor_puts turns `\n` into `\r\n`).
fn line(v: &QValue) -> String {
    let mut s = v.to_json();
    s.push_str("\r\n");
    s
}
