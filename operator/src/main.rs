//! `keeper-operator`: parses the command line and calls into the library.

use std::io::Read as _;
use std::process::ExitCode;

use clap::Parser;
use keeper_operator::cli::{Cli, Command};
use keeper_operator::{render, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Render(args) => {
            let input = if args.file.as_os_str() == "-" {
                let mut input = String::new();
                std::io::stdin().read_to_string(&mut input).map(|_| input)
            } else {
                std::fs::read_to_string(&args.file)
            };
            let result = input
                .map_err(|e| format!("reading {}: {e}", args.file.display()))
                .and_then(|input| {
                    render::render(&input, &args.config()).map_err(|e| e.to_string())
                });
            match result {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("keeper-operator render: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            telemetry::init(args.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("keeper-operator: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(keeper_operator::run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
