//! trellis-cni: a CNI 1.1 plugin that attaches containers to trellis
//! networks through the node's trellisd.
//!
//! A runtime (podman, containerd, CRI-O) runs it once per verb with the
//! verb and the container in the environment and the network configuration
//! on stdin, and reads a result or an error from stdout; logs go to stderr
//! only. The plugin keeps no state: trellisd does the work and keeps the
//! records, so an ADD repeated after a crash answers the same result, and
//! a DEL of something unknown succeeds.
//!
//! Configurations of cniVersion 0.4.0, 1.0.0 and 1.1.0 are accepted and
//! answered in their own version. The plugin's keys are described in the
//! README ("CNI plugin") and in `dist/cni/`.

mod convert;
mod env;
mod plugin;
mod spec;

use env::Command;
use spec::{CniError, NetConf, code};
use std::io::{Read, Write};

fn main() {
    let (version, outcome) = run();
    let mut out = std::io::stdout().lock();
    let code = match outcome {
        Ok(Some(doc)) => {
            let _ = writeln!(out, "{doc}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            eprintln!("trellis-cni: {e}");
            let _ = writeln!(out, "{}", e.to_json(&version));
            1
        }
    };
    let _ = out.flush();
    std::process::exit(code);
}

/// The verb's outcome: a document to print (ADD's result, VERSION's
/// answer), nothing (DEL, CHECK, GC, STATUS), or an error; with the version
/// to write an error in.
fn run() -> (String, Result<Option<serde_json::Value>, CniError>) {
    // stdin first, whole: a runtime writing the configuration must never
    // meet a closed pipe, whatever is wrong with the environment.
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        return (
            spec::LATEST.to_owned(),
            Err(CniError::new(code::IO_FAILURE, format!("stdin: {e}"))),
        );
    }
    let env = match env::read(|k| std::env::var(k).ok()) {
        Ok(e) => e,
        Err(e) => return (spec::LATEST.to_owned(), Err(e)),
    };
    if env.command == Command::Version {
        let asked = serde_json::from_slice::<serde_json::Value>(&input)
            .ok()
            .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned));
        return (
            spec::LATEST.to_owned(),
            Ok(Some(spec::version_info(asked.as_deref()))),
        );
    }
    let conf: NetConf = match serde_json::from_slice(&input) {
        Ok(c) => c,
        Err(e) => {
            return (
                spec::LATEST.to_owned(),
                Err(CniError::new(
                    code::DECODE,
                    format!("network configuration on stdin: {e}"),
                )),
            );
        }
    };
    // Errors are written in the configuration's version when it is one
    // this plugin speaks, else in the newest.
    let version = if spec::SUPPORTED.contains(&conf.cni_version.as_str()) {
        conf.cni_version.clone()
    } else {
        spec::LATEST.to_owned()
    };
    if let Err(e) = spec::check_version(&conf.cni_version) {
        return (version, Err(e));
    }
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(code::INTERNAL, format!("tokio runtime: {e}")))
        .and_then(|rt| rt.block_on(verb(&conf, &env)));
    (version, outcome)
}

async fn verb(conf: &NetConf, env: &env::Env) -> Result<Option<serde_json::Value>, CniError> {
    // What can be judged without trellisd is judged first: a bad
    // configuration or a missing namespace never waits on the daemon.
    let mut attach = None;
    if matches!(env.command, Command::Add | Command::Check) {
        if !std::path::Path::new(&env.netns).exists() {
            return Err(CniError::new(
                code::UNKNOWN_CONTAINER,
                format!("CNI_NETNS {:?} does not exist", env.netns),
            ));
        }
        attach = Some(convert::attach_request(conf, env)?);
        convert::validate(conf)?;
    }
    if env.command == Command::Gc {
        convert::network_name(conf)?;
    }
    let socket = conf
        .socket
        .as_deref()
        .unwrap_or(trellis_client::DEFAULT_TRELLISD_SOCKET);
    let unavailable = if env.command == Command::Status {
        code::NOT_AVAILABLE
    } else {
        code::TRY_AGAIN
    };
    let address = trellis_client::Address::Unix(socket.into());
    let mut api = trellis_client::agent(&address, "socket", &trellis_client::Tls::default())
        .await
        .map_err(|e| {
            CniError::new(unavailable, "trellisd is not reachable").with_details(e.to_string())
        })?;
    let call = async {
        match env.command {
            Command::Add => plugin::add(&mut api, conf, attach.expect("built for ADD"))
                .await
                .map(|r| Some(r.to_json(&conf.cni_version))),
            Command::Del => plugin::del(&mut api, env).await.map(|()| None),
            Command::Check => plugin::check(&mut api, conf, env).await.map(|()| None),
            Command::Gc => plugin::gc(&mut api, conf).await.map(|()| None),
            Command::Status => plugin::status(&mut api).await.map(|()| None),
            Command::Version => unreachable!("answered before"),
        }
    };
    tokio::time::timeout(plugin::CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(CniError::new(
                unavailable,
                format!(
                    "trellisd did not answer within {} s",
                    plugin::CALL_TIMEOUT.as_secs()
                ),
            ))
        })
}
