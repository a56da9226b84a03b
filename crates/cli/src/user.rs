//! `thunderhead user`: users, their roles and their API tokens.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::show;
use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user and print their API token (shown this once only)
    Add {
        name: String,
        /// User (their own jobs), JobAdministrator (every job) or Administrator (everything)
        #[arg(long, default_value = "User")]
        role: String,
    },
    /// List users and their roles
    List,
    /// Remove a user: their token stops working at once (their jobs stay)
    Remove { name: String },
    /// Give a user a new token (the old one stops working at once) and print it
    Token { name: String },
    /// Show the user and role of the token in use
    Whoami,
}

pub fn run(c: &Client, command: UserCommand, as_json: bool) -> Result<i32> {
    let issued = |answer: Value, verb: &str| {
        if as_json {
            show::json(&answer);
            return;
        }
        let field = |k: &str| answer[k].as_str().unwrap_or_default().to_string();
        println!("{verb} {} ({})", field("name"), field("role"));
        println!("token (shown only now; keep it secret): {}", field("token"));
        println!("use it with: export THUNDERHEAD_TOKEN=<the token>   (or --token)");
    };
    match command {
        UserCommand::Add { name, role } => {
            let answer: Value = c.post(&ApiPath::new("users"), &json!({"name": name, "role": role}))?;
            issued(answer, "added user");
        }
        UserCommand::Token { name } => {
            let answer: Value = c.post(&ApiPath::new("users").segment(&name).segment("token"), &json!({}))?;
            issued(answer, "new token for");
        }
        UserCommand::Remove { name } => {
            let answer: Value = c.delete_json(&ApiPath::new("users").segment(&name))?;
            if as_json {
                show::json(&answer);
            } else {
                println!("removed user {name}: their token no longer works");
            }
        }
        UserCommand::List => {
            let users: Vec<thunderhead_core::access::UserView> = c.get(&ApiPath::new("users"))?;
            if as_json {
                show::json(&users);
            } else {
                show::table(
                    &["name", "role", "since"],
                    users
                        .iter()
                        .map(|u| vec![u.name.clone(), u.role.name().to_string(), show::time(Some(u.created_at))])
                        .collect(),
                );
            }
        }
        UserCommand::Whoami => {
            let me: thunderhead_core::access::Caller = c.get(&ApiPath::new("whoami"))?;
            if as_json {
                show::json(&me);
            } else {
                println!("{} ({})", me.name, me.role.name());
            }
        }
    }
    Ok(0)
}
