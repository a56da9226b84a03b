//! `thunderhead token`: join tokens, with which agents of on-premises nodes join the cluster.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::show;
use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a join token and print it (shown this once only)
    Create {
        /// Only nodes of this template may join with it [default: any node]
        #[arg(long)]
        template: Option<String>,
        /// How long it is honoured: 30m, 24h, 7days
        #[arg(long, default_value = "24h")]
        expires: humantime::Duration,
    },
    /// List join tokens (never the tokens themselves)
    List,
    /// Remove a join token: no agent joins with it any more (joined nodes stay)
    Remove { id: String },
}

pub fn run(c: &Client, command: TokenCommand, as_json: bool) -> Result<i32> {
    match command {
        TokenCommand::Create { template, expires } => {
            let body = json!({"template": template, "expires_in_secs": expires.as_secs()});
            let answer: Value = c.post(&ApiPath::new("join-tokens"), &body)?;
            if as_json {
                show::json(&answer);
            } else {
                let scope = answer["template"].as_str().map_or("any node".to_string(), |t| format!("nodes of {t}"));
                println!(
                    "join token {} for {scope}, until {}",
                    answer["id"].as_str().unwrap_or_default(),
                    show::time(answer["expires_at"].as_u64())
                );
                println!("token (shown only now; keep it secret): {}", answer["token"].as_str().unwrap_or_default());
                println!("join a node with: thunderhead agent --server URL --ca ca.pem --join-token <the token>");
            }
        }
        TokenCommand::List => {
            let tokens: Vec<thunderhead_core::access::JoinTokenView> = c.get(&ApiPath::new("join-tokens"))?;
            if as_json {
                show::json(&tokens);
            } else {
                show::table(
                    &["id", "for", "expires", "created"],
                    tokens
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.template.clone().unwrap_or_else(|| "any node".into()),
                                show::time(Some(t.expires_at)),
                                show::time(Some(t.created_at)),
                            ]
                        })
                        .collect(),
                );
            }
        }
        TokenCommand::Remove { id } => {
            let answer: Value = c.delete_json(&ApiPath::new("join-tokens").segment(&id))?;
            if as_json {
                show::json(&answer);
            } else {
                println!("removed join token {id}");
            }
        }
    }
    Ok(0)
}
