//! `thunderhead provider`: the providers of the head node's build, what each deploys and the
//! settings its templates take.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::output::Output;
use crate::show;
use anyhow::Result;
use clap::Subcommand;
use thunderhead_core::view::ProviderView;

#[derive(Subcommand)]
pub enum ProviderCommand {
    /// List the providers of the head node's build and the settings each takes
    List,
    /// Show one provider: what it deploys, whether this build deploys it, its settings
    Show { name: String },
}

pub fn run(c: &Client, command: ProviderCommand, out: Output) -> Result<i32> {
    match command {
        ProviderCommand::List => {
            let list: Vec<ProviderView> = c.get(&ApiPath::new("providers"))?;
            out.list(&list, &["name", "deploys", "settings", "summary"], |p| {
                let settings: Vec<&str> = p.settings.iter().map(|s| s.name.as_str()).collect();
                vec![
                    p.name.clone(),
                    yes_no(p.deployable).into(),
                    if settings.is_empty() { "-".into() } else { settings.join(", ") },
                    p.summary.clone(),
                ]
            });
        }
        ProviderCommand::Show { name } => {
            let p: ProviderView = c.get(&ApiPath::new("providers").segment(&name))?;
            out.one(&p, print_provider);
        }
    }
    Ok(0)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A provider as `provider show` prints it for people.
fn print_provider(p: &ProviderView) {
    println!("provider:    {}", p.name);
    println!("summary:     {}", p.summary);
    if p.deployable {
        println!("deploys:     yes, this build deploys its nodes");
    } else {
        println!(
            "deploys:     no, not in this build: its templates are checked and kept, starting their nodes is refused"
        );
    }
    println!("proxies:     {}", yes_no(p.proxies));
    match &p.sizes {
        None => println!("sizes:       the standard sizes (Small, Medium, Large, ExtraLarge)"),
        Some(sizes) => {
            let sizes: Vec<String> = sizes.iter().map(|s| format!("{} ({} cores)", s.name, s.cores)).collect();
            println!("sizes:       {}", sizes.join(", "));
        }
    }
    if p.settings.is_empty() {
        println!("settings:    none");
        return;
    }
    println!();
    let rows = p
        .settings
        .iter()
        .map(|s| vec![s.name.clone(), s.kind.clone(), show::opt(&s.default), s.rule.clone()])
        .collect();
    show::table(&["name", "kind", "default", "rule"], rows);
    println!();
    println!(
        "give settings on template create and edit: --set KEY=VALUE (repeatable; KEY= removes one on edit) or --settings FILE.toml"
    );
    let example = p.settings.iter().find(|s| s.kind != "secret").map_or("KEY", |s| s.name.as_str());
    println!("  e.g. thunderhead template create NAME --provider {} --set {example}=VALUE", p.name);
    let secrets: Vec<&str> = p.settings.iter().filter(|s| s.kind == "secret").map(|s| s.name.as_str()).collect();
    if !secrets.is_empty() {
        println!(
            "secret settings ({}) are given with their own options (see their rules), checked and sealed by the head node, never shown",
            secrets.join(", ")
        );
    }
}
