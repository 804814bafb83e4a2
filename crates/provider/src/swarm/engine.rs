//! The one Engine API call that bollard's models cannot carry: the tasks
//! with their network attachments (the addresses of replicas on the overlay
//! network), read as raw JSON.

use std::collections::HashMap;
use std::io;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the routing loop needs of a task.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(default)]
    pub slot: u64,
    /// The node it was given to (empty until then).
    #[serde(rename = "NodeID", default)]
    pub node_id: String,
    #[serde(default)]
    pub desired_state: String,
    #[serde(default)]
    pub status: TaskStatus,
    #[serde(default)]
    pub networks_attachments: Vec<NetworkAttachment>,
    /// RFC 3339.
    #[serde(default)]
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskStatus {
    #[serde(default)]
    pub state: String,
    /// Why it failed or was rejected ("No such image: ...").
    #[serde(default)]
    pub err: String,
    #[serde(default)]
    pub container_status: Option<ContainerStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerStatus {
    /// Empty until the container is made.
    #[serde(rename = "ContainerID", default)]
    pub container_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkAttachment {
    pub network: AttachedNetwork,
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachedNetwork {
    pub spec: NetworkSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSpec {
    pub name: String,
}

impl Task {
    /// The task's address on `network` (`10.0.1.5/24` gives `10.0.1.5`).
    pub fn address_on(&self, network: &str) -> Option<std::net::IpAddr> {
        self.networks_attachments
            .iter()
            .find(|a| a.network.spec.name == network)?
            .addresses
            .iter()
            .find_map(|cidr| cidr.split('/').next()?.parse().ok())
    }
}

/// Where the engine listens: `DOCKER_HOST` (`unix://` or `tcp://`), else
/// the default socket.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Unix(String),
    Tcp(String),
}

impl Endpoint {
    pub fn from_env() -> Endpoint {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if host.starts_with("tcp://") => {
                Endpoint::Tcp(host.trim_start_matches("tcp://").trim_end_matches('/').to_owned())
            }
            Ok(host) if host.starts_with("unix://") => {
                Endpoint::Unix(host.trim_start_matches("unix://").to_owned())
            }
            _ => Endpoint::Unix("/var/run/docker.sock".to_owned()),
        }
    }

    /// `GET path` (with its query), the JSON body of a 200 answer.
    async fn get(&self, path: &str) -> io::Result<Vec<u8>> {
        let request = format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n");
        let mut answer = Vec::new();
        match self {
            Endpoint::Unix(socket) => {
                let mut s = tokio::net::UnixStream::connect(socket).await?;
                s.write_all(request.as_bytes()).await?;
                s.read_to_end(&mut answer).await?;
            }
            Endpoint::Tcp(addr) => {
                let mut s = tokio::net::TcpStream::connect(addr).await?;
                s.write_all(request.as_bytes()).await?;
                s.read_to_end(&mut answer).await?;
            }
        }
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| io::Error::other("the engine's answer has no header end"))?;
        let head = String::from_utf8_lossy(&answer[..split]);
        let status = head.split(' ').nth(1).unwrap_or("");
        let body = answer[split + 4..].to_vec();
        if status != "200" {
            return Err(io::Error::other(format!(
                "GET {path}: {status} {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            return Err(io::Error::other("the engine answered HTTP/1.0 with a chunked body"));
        }
        Ok(body)
    }

    /// The tasks of one service, whatever their state (Swarm keeps a few
    /// of the past ones).
    pub async fn service_tasks(&self, service_id: &str) -> io::Result<Vec<Task>> {
        let mut filters = HashMap::new();
        filters.insert("service", vec![service_id]);
        let query = serde_json::to_string(&filters).map_err(io::Error::other)?;
        let body = self.get(&format!("/tasks?filters={}", ferrofaas_types::query::encode(&query))).await?;
        serde_json::from_slice(&body).map_err(|e| io::Error::other(format!("the engine's task list: {e}")))
    }

    /// The tasks Swarm wants running.
    pub async fn running_tasks(&self) -> io::Result<Vec<Task>> {
        let mut filters = HashMap::new();
        filters.insert("desired-state", vec!["running"]);
        let query = serde_json::to_string(&filters).map_err(io::Error::other)?;
        let body = self.get(&format!("/tasks?filters={}", ferrofaas_types::query::encode(&query))).await?;
        serde_json::from_slice(&body).map_err(|e| io::Error::other(format!("the engine's task list: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_addresses_from_the_engines_json() {
        let json = r#"[{"ID":"t1","ServiceID":"s1","Slot":2,"NodeID":"nd1","DesiredState":"running",
            "Status":{"State":"running","Timestamp":"x","ContainerStatus":{"ContainerID":"c1","PID":7}},"Spec":{},
            "NetworksAttachments":[
              {"Network":{"ID":"n0","Spec":{"Name":"ingress"}},"Addresses":["10.0.0.4/24"]},
              {"Network":{"ID":"n1","Spec":{"Name":"ferrofaas"}},"Addresses":["10.0.1.7/24"]}]},
            {"ID":"t2","ServiceID":"s1","DesiredState":"running","UpdatedAt":"2026-12-01T12:00:00Z",
             "Status":{"State":"rejected","Err":"No such image: fn:1"}}]"#;
        let tasks: Vec<Task> = serde_json::from_str(json).unwrap();
        assert_eq!(tasks[0].address_on("ferrofaas"), Some("10.0.1.7".parse().unwrap()));
        assert_eq!(tasks[0].slot, 2);
        assert_eq!(tasks[0].node_id, "nd1");
        assert_eq!(tasks[1].address_on("ferrofaas"), None);
        assert_eq!(tasks[1].status.state, "rejected");
        assert_eq!(tasks[1].status.err, "No such image: fn:1");
        assert_eq!(tasks[1].updated_at, "2026-12-01T12:00:00Z");
        assert_eq!(tasks[0].status.container_status.as_ref().unwrap().container_id, "c1");
    }

    #[test]
    fn filters_are_percent_encoded() {
        assert_eq!(ferrofaas_types::query::encode(r#"{"a":["b c"]}"#), "%7B%22a%22%3A%5B%22b%20c%22%5D%7D");
    }
}
