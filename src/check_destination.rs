//! `volley check-config --destination NAME`: which `[[destination]]` blocks apply to a
//! recipient domain or MX host name, and every setting in effect with the block (or `[smtp]`
//! value) it comes from. The file's own values are checked first; nothing is resolved in DNS.

use std::path::Path;

use volley_scheduler::config::SendConfig;

/// Prints the problems of the file, then each destination's settings; whether the file had no
/// problem.
pub fn run(config_path: &Path, names: &[String]) -> bool {
    let (config, problems) = match SendConfig::load_collecting(config_path) {
        Ok(loaded) => loaded,
        Err(e) => {
            println!("ERROR  config: {e}");
            return false;
        }
    };
    for p in &problems {
        println!("ERROR  {}: {}, {p}", p.field, config_path.display());
    }
    let Some(config) = config else {
        println!("ERROR  config: {}: the file is incomplete", config_path.display());
        return false;
    };
    let providers = volley_warmup::Providers::new(&config.warmup.provider_config());
    let policies = config.destination_policies();
    for name in names {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        // The name is tried as the recipient domain and as one MX host of the site.
        let provider = providers.group_of(&[name.as_str()], &name);
        let r = policies.resolve(&name, &[name.as_str()], provider);
        let blocks = if r.blocks.is_empty() {
            "none, [smtp] settings".to_string()
        } else {
            r.blocks.join(" > ")
        };
        println!("destination {name}: provider group {provider}; blocks: {blocks}");
        for f in &r.fields {
            println!("  {:<32} {:<14} {}", f.field, f.value, f.source);
        }
    }
    problems.is_empty()
}
