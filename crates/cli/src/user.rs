//! `thunderhead user`: users, their roles and their API tokens.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::output::Output;
use crate::show;
use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};
use thunderhead_core::access::{Caller, UserView};

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

pub fn run(c: &Client, command: UserCommand, out: Output) -> Result<i32> {
    match command {
        UserCommand::Add { name, role } => {
            let answer: Value = c.post(&ApiPath::new("users"), &json!({"name": name, "role": role}))?;
            out.one(&answer, |answer| print_issued(answer, "added user"));
        }
        UserCommand::Token { name } => {
            let answer: Value = c.post(&ApiPath::new("users").segment(&name).segment("token"), &json!({}))?;
            out.one(&answer, |answer| print_issued(answer, "new token for"));
        }
        UserCommand::Remove { name } => {
            let answer: Value = c.delete_json(&ApiPath::new("users").segment(&name))?;
            out.one(&answer, |_| println!("removed user {name}: their token no longer works"));
        }
        UserCommand::List => {
            let users: Vec<UserView> = c.get(&ApiPath::new("users"))?;
            out.list(&users, &["name", "role", "since"], |u| {
                vec![u.name.clone(), u.role.name().to_string(), show::time(Some(u.created_at))]
            });
        }
        UserCommand::Whoami => {
            let me: Caller = c.get(&ApiPath::new("whoami"))?;
            out.one(&me, |me| println!("{} ({})", me.name, me.role.name()));
        }
    }
    Ok(0)
}

/// A user's new token, shown this once.
fn print_issued(answer: &Value, verb: &str) {
    let field = |k: &str| answer[k].as_str().unwrap_or_default().to_string();
    println!("{verb} {} ({})", field("name"), field("role"));
    println!("token (shown only now; keep it secret): {}", field("token"));
    println!("use it with: export THUNDERHEAD_TOKEN=<the token>   (or --token)");
}
