//! `thunderhead token`: join tokens, with which agents of on-premises nodes join the cluster.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::output::Output;
use crate::show;
use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};
use thunderhead_core::access::JoinTokenView;

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

pub fn run(c: &Client, command: TokenCommand, out: Output) -> Result<i32> {
    match command {
        TokenCommand::Create { template, expires } => {
            let body = json!({"template": template, "expires_in_secs": expires.as_secs()});
            let answer: Value = c.post(&ApiPath::new("join-tokens"), &body)?;
            out.one(&answer, |answer| {
                let scope = answer["template"].as_str().map_or("any node".to_string(), |t| format!("nodes of {t}"));
                println!(
                    "join token {} for {scope}, until {}",
                    answer["id"].as_str().unwrap_or_default(),
                    show::time(answer["expires_at"].as_u64())
                );
                println!("token (shown only now; keep it secret): {}", answer["token"].as_str().unwrap_or_default());
                println!("join a node with: thunderhead agent --server URL --ca ca.pem --join-token <the token>");
            });
        }
        TokenCommand::List => {
            let tokens: Vec<JoinTokenView> = c.get(&ApiPath::new("join-tokens"))?;
            out.list(&tokens, &["id", "for", "expires", "created"], |t| {
                vec![
                    t.id.clone(),
                    t.template.clone().unwrap_or_else(|| "any node".into()),
                    show::time(Some(t.expires_at)),
                    show::time(Some(t.created_at)),
                ]
            });
        }
        TokenCommand::Remove { id } => {
            let answer: Value = c.delete_json(&ApiPath::new("join-tokens").segment(&id))?;
            out.one(&answer, |_| println!("removed join token {id}"));
        }
    }
    Ok(0)
}
