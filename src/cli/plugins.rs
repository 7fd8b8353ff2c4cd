//! `spirit plugins`: the built-in plugins and every external plugin found (each one
//! started once and asked to describe itself, so a broken one shows here).

use serde_json::{json, Value};
use spirit_external::peer::Peer;

fn external() -> (Vec<Value>, Vec<String>) {
    let reserved: Vec<&str> = crate::builtin_plugins().iter().map(|p| p.0).collect();
    let (found, problems) = spirit_external::discover(&reserved);
    let list = found
        .iter()
        .map(|m| {
            let (status, claims) = match Peer::start(m) {
                Ok(p) => ("ok".to_string(), p.described.claims.describe()),
                Err(e) => (format!("broken: {e}"), m.claims.describe()),
            };
            json!({
                "name": m.name, "version": m.version, "kind": "external",
                "exec": m.exec, "manifest": m.path, "description": m.description,
                "claims": claims, "status": status,
            })
        })
        .collect();
    (list, problems)
}

pub fn plugins(as_json: bool) -> i32 {
    let mut all: Vec<Value> = crate::builtin_plugins()
        .into_iter()
        .map(|(name, version, claims)| {
            json!({"name": name, "version": version, "kind": "built-in", "claims": claims, "status": "ok"})
        })
        .collect();
    let (ext, problems) = external();
    all.extend(ext);
    if as_json {
        let v = json!({
            "plugins": all,
            "directories": spirit_external::manifest::dirs(),
            "problems": problems,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return 0;
    }
    for p in &all {
        let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
        println!("{} v{} ({})", s("name"), p["version"], s("kind"));
        if p["kind"] == "external" {
            println!("  exec: {}", s("exec"));
            println!("  {}", s("description"));
            println!("  status: {}", s("status"));
        }
        println!("  claims: {}", s("claims"));
    }
    for pr in problems {
        println!("warning: {pr}");
    }
    0
}
