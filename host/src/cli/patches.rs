//! `weir udf deploy`, `rollback`, `history` and `weir job filter`: a
//! change to a running job's stage as the client sends it and prints what
//! each vertex did.

use super::cluster::{Connect, connect, runtime};
use crate::net::{Request, Response};

/// Sends a deploy, rollback or filter change and prints what it did.
pub fn patch(c: &Connect, request: Request, body: Option<Vec<u8>>) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let client = connect(c).await?;
        if let Response::Patched(r) = client.call(&request, body.as_deref()).await? {
            if let Some(s) = &r.shadow {
                let held = if s.rows < s.asked {
                    format!(" ({} asked; the input stream holds no more)", s.asked)
                } else {
                    String::new()
                };
                println!(
                    "shadow run on the last {} input rows{held}: {} output rows differ (running version wrote {}, new version {})",
                    s.rows, s.differ, s.old_rows, s.new_rows
                );
            }
            if r.copies.is_empty() {
                print_patch(&r);
            } else {
                println!(
                    "job `{}` stage `{}` runs as {} rVertices; each took the change:",
                    r.job,
                    r.stage,
                    r.copies.len()
                );
                for copy in &r.copies {
                    print_patch(copy);
                }
            }
        }
        client.close().await;
        Ok(())
    })
}

/// Prints what a deploy, rollback or filter did to one vertex.
fn print_patch(r: &crate::jobs::PatchReport) {
    let to = &r.to[..r.to.len().min(12)];
    let what = if r.change.starts_with("filter") {
        r.change.clone()
    } else {
        format!("module {} -> {to}", r.from)
    };
    match r.applied {
        None if r.finished => println!(
            "job `{}` stage `{}`: {what} not applied: this copy had finished (its input ended)",
            r.job, r.stage
        ),
        Some((position, ctis)) => println!(
            "job `{}` stage `{}`: {what}, in effect from input position {position} (after CTI {ctis})",
            r.job, r.stage
        ),
        None => println!(
            "job `{}` stage `{}`: {what} validated and queued durably (it survives a restart); it takes effect at the stage's next CTI, after any change queued before it (none arrived yet)",
            r.job, r.stage
        ),
    }
}

/// Prints a stage's module history.
pub fn history(c: &Connect, job: String, stage: String, json: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let client = connect(c).await?;
        if let Response::History(list) = client
            .call(&Request::UdfHistory { job, stage }, None)
            .await?
        {
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let width = list.iter().map(|h| h.copy.len()).max().unwrap_or(0);
                let copy = |name: &str| {
                    if width == 0 {
                        String::new()
                    } else {
                        format!("{name:<width$} ")
                    }
                };
                println!(
                    "  {}{:<12} {:>12} {:>8}  {:<24} why",
                    copy("copy"),
                    "version",
                    "position",
                    "ctis",
                    "when (UTC)"
                );
                for h in &list {
                    let when = if h.at_ms == 0 {
                        "-".to_string()
                    } else {
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + std::time::Duration::from_millis(h.at_ms),
                        )
                        .to_string()
                    };
                    println!(
                        "{} {}{:<12} {:>12} {:>8}  {:<24} {}",
                        if h.current { "*" } else { " " },
                        copy(&h.copy),
                        &h.version[..h.version.len().min(12)],
                        h.position,
                        h.ctis,
                        when,
                        h.why
                    );
                }
            }
        }
        client.close().await;
        Ok(())
    })
}
