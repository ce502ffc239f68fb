//! `transcoder clients provision`: one RabbitMQ user per client, allowed to
//! declare, bind and consume only its own queues (`<prefix>.client.<client>.*`)
//! and to read only its own `<prefix>.notify.<client>` exchange and its
//! event log `<prefix>.notify.<client>.log`.
//! Through `rabbitmqctl`, on a host that can administer the broker.

use std::process::Command;

use anyhow::{bail, Context};

use crate::config::Settings;
use crate::domain::ClientId;

/// The permissions of a client's user: (configure, write, read) patterns.
pub fn permissions(prefix: &str, client: &ClientId) -> (String, String, String) {
    let p = regex_escape(prefix);
    let own_queues = format!("^{p}\\.client\\.{client}\\..+$");
    // Its own queues, its exchange (to bind them) and its event log.
    let read = format!("^({p}\\.client\\.{client}\\..+|{p}\\.notify\\.{client}(\\.log)?)$");
    (own_queues.clone(), own_queues, read)
}

pub fn user_name(prefix: &str, client: &ClientId) -> String {
    format!("{prefix}.{client}")
}

fn regex_escape(s: &str) -> String {
    s.chars().fold(String::new(), |mut out, c| {
        if !c.is_ascii_alphanumeric() && c != '_' && c != '-' {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// Creates or updates the users and prints `client<TAB>amqp-url` lines.
pub fn provision(settings: &Settings, rabbitmqctl: &str) -> anyhow::Result<Vec<(ClientId, String)>> {
    let uri: lapin::uri::AMQPUri =
        settings.amqp.url.parse().map_err(|e| anyhow::anyhow!("amqp.url is not an AMQP URL: {e}"))?;
    let vhost = uri.vhost.clone();
    let clients: Vec<ClientId> = if settings.auth.keys.is_empty() {
        vec![ClientId::development()]
    } else {
        let mut c: Vec<ClientId> = settings.auth.keys.values().filter_map(|c| ClientId::parse(c)).collect();
        c.sort();
        c.dedup();
        c
    };
    let mut urls = Vec::new();
    for client in clients {
        let user = user_name(&settings.amqp.prefix, &client);
        let password = uuid::Uuid::new_v4().simple().to_string();
        if ctl(rabbitmqctl, &["add_user", &user, &password]).is_err() {
            ctl(rabbitmqctl, &["change_password", &user, &password])?;
        }
        let (configure, write, read) = permissions(&settings.amqp.prefix, &client);
        ctl(rabbitmqctl, &["set_permissions", "-p", &vhost, &user, &configure, &write, &read])?;
        let host = &uri.authority.host;
        let port = uri.authority.port;
        let vhost_path = if vhost == "/" { "%2f".to_string() } else { vhost.clone() };
        let scheme = if matches!(uri.scheme, lapin::uri::AMQPScheme::AMQPS) { "amqps" } else { "amqp" };
        urls.push((client, format!("{scheme}://{user}:{password}@{host}:{port}/{vhost_path}")));
    }
    Ok(urls)
}

fn ctl(rabbitmqctl: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(rabbitmqctl).args(args).output().with_context(|| format!("cannot run {rabbitmqctl}"))?;
    if !out.status.success() {
        bail!("{rabbitmqctl} {}: {}", args[0], String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_may_touch_only_its_own_names() {
        let acme = ClientId::parse("acme").unwrap();
        let (configure, _, read) = permissions("transcoder", &acme);
        assert_eq!(configure, "^transcoder\\.client\\.acme\\..+$");
        assert_eq!(read, "^(transcoder\\.client\\.acme\\..+|transcoder\\.notify\\.acme(\\.log)?)$");
    }
}
