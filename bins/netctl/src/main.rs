//! netctl: the command-line client of trellisd and of the cluster controller.
//!
//! A thin shell over the generated gRPC clients of `trellis.v1.Agent`,
//! `trellis.v1.Bgp` and `trellis.v1.Controller`: one subcommand per RPC,
//! arguments checked locally before anything is sent, answers rendered as
//! tables for people or JSON/YAML for programs, and the server's status code
//! and message on stderr with an exit code per class of failure (see
//! `netctl --help`).
//!
//! Layout: [`cli`] declares the command line, [`parse`] the value syntaxes,
//! [`conn`] reaches either server, [`run`] turns commands into requests,
//! [`view`] turns answers into stable serialisable structs, [`render`] turns
//! those into text, [`exit`] maps failures to exit codes. [`cluster`] does
//! the same for the controller's commands, and [`bgp`] for trellisd's BGP
//! service, on the same machinery.

mod bgp;
mod cli;
mod cluster;
mod conn;
mod exit;
mod parse;
mod render;
mod run;
mod time;
mod view;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(async {
            let mut stdout = std::io::stdout().lock();
            let code = run::run(cli, &mut stdout).await?;
            stdout.flush().map_err(exit::output)?;
            Ok(code)
        }),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the tokio runtime")),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // `netctl watch | head` ends with EPIPE on stdout: the reader is
        // done, which is no failure of ours. (A broken pipe on the
        // connection to trellisd is one, and is reported like any other.)
        Err(e) if e.is::<exit::OutputClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            let (line, code) = exit::report(&e);
            eprintln!("error: {line}");
            code
        }
    }
}
