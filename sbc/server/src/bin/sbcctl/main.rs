//! `sbcctl`: the SBC's admin API from a shell. Tables for people, `--json` for scripts (the API's JSON as it
//! came). Exit codes: 0 done, 1 the SBC refused (its reason is printed), 2 no SBC answers.

mod client;
mod tables;

use clap::{Parser, Subcommand};
use client::{Client, Failure};

/// Where the admin API listens by default: `[api] listen` of config/sbc.toml.
const DEFAULT_API: &str = "http://127.0.0.1:8080";

#[derive(Debug, Parser)]
#[command(name = "sbcctl", version, about = "Look at and steer a running SBC through its admin API")]
struct Args {
    /// The admin API's base URL.
    #[arg(long, env = "SBC_API", default_value = DEFAULT_API, global = true)]
    api: String,
    /// The bearer token, needed when the API listens off loopback.
    #[arg(long, env = "SBC_API_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Calls in progress.
    Calls {
        /// Only calls with a leg on this trunk.
        #[arg(long)]
        trunk: Option<String>,
        /// Only calls in this state: setup, answered or ending.
        #[arg(long)]
        state: Option<String>,
        /// Only calls whose called number starts with this.
        #[arg(long)]
        number: Option<String>,
    },
    /// One call: both legs and the relay's media figures.
    Call {
        /// The call's id (first column of `sbcctl calls`).
        id: u64,
    },
    /// Hang a call up: BYE on both legs (CDR cause `admin`).
    Hangup {
        /// The call's id.
        id: u64,
    },
    /// Trunks: state, gateways and their probes, calls, registration.
    Trunks,
    /// Take a trunk out of routing for new calls, or put it back (calls up stay).
    Trunk {
        #[command(subcommand)]
        action: TrunkAction,
    },
    /// Which trunks a number would try, in order, without placing a call.
    Route {
        /// The called number.
        number: String,
        /// The inbound trunk whose number rules apply first.
        #[arg(long)]
        from: Option<String>,
    },
    /// Validate the config file and apply it.
    Reload,
    /// Take no new calls; let the calls up end, then exit.
    Drain {
        /// Seconds to wait for the calls before ending them (default: the configured deadline).
        #[arg(long)]
        deadline: Option<u64>,
    },
    /// The hot-standby pair's state.
    Ha,
}

#[derive(Debug, Subcommand)]
enum TrunkAction {
    /// Skip the trunk for new calls.
    Disable {
        /// The trunk's name.
        name: String,
    },
    /// Route new calls to the trunk again.
    Enable {
        /// The trunk's name.
        name: String,
    },
}

fn main() {
    let args = Args::parse();
    let client = Client::new(&args.api, args.token.clone());
    let result = run(&client, &args);
    match result {
        Ok(()) => {}
        Err(Failure::NoAnswer(why)) => {
            eprintln!("sbcctl: no SBC answers at {} ({why})", client.base());
            std::process::exit(2);
        }
        Err(Failure::Refused { status, reason }) => {
            eprintln!("sbcctl: {reason} (HTTP {status})");
            std::process::exit(1);
        }
    }
}

fn run(client: &Client, args: &Args) -> Result<(), Failure> {
    let (value, show): (serde_json::Value, fn(&serde_json::Value) -> String) = match &args.command {
        Command::Calls { trunk, state, number } => {
            let mut query = Vec::new();
            for (k, v) in [("trunk", trunk), ("state", state), ("number", number)] {
                if let Some(v) = v {
                    query.push((k, v.as_str()));
                }
            }
            (client.get("/calls", &query)?, tables::calls)
        }
        Command::Call { id } => (client.get(&format!("/calls/{id}"), &[])?, tables::call),
        Command::Hangup { id } => (client.post(&format!("/calls/{id}/hangup"), &[])?, tables::fields),
        Command::Trunks => (client.get("/trunks", &[])?, tables::trunks),
        Command::Trunk { action } => {
            let (name, verb) = match action {
                TrunkAction::Disable { name } => (name, "disable"),
                TrunkAction::Enable { name } => (name, "enable"),
            };
            (client.post(&format!("/trunks/{}/{verb}", client::segment(name)), &[])?, tables::fields)
        }
        Command::Route { number, from } => {
            let query: Vec<(&str, &str)> = from.iter().map(|f| ("from", f.as_str())).collect();
            (client.get(&format!("/route/{}", client::segment(number)), &query)?, tables::route)
        }
        Command::Reload => (client.post("/config/reload", &[])?, tables::fields),
        Command::Drain { deadline } => {
            let secs = deadline.map(|d| d.to_string());
            let query: Vec<(&str, &str)> = secs.iter().map(|s| ("deadline", s.as_str())).collect();
            (client.post("/drain", &query)?, tables::fields)
        }
        Command::Ha => (client.get("/ha", &[])?, tables::fields),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        print!("{}", show(&value));
    }
    Ok(())
}
