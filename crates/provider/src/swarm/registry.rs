//! Images for every node: what a gateway builds exists on its own engine
//! only, so before a function's service names it, the image is pushed to a
//! registry every node can pull from, and the service names it by digest
//! (`<registry>/<repository>@sha256:...`), so that every replica of one
//! version runs exactly it, whichever node it lands on.
//!
//! The registry is the platform's own (`faas swarm up` runs one as a
//! Swarm service, see [`super::platform`]), reached at `127.0.0.1:5000` on
//! every node through Swarm's routing mesh: Docker pulls from a registry on
//! the loopback over plain HTTP with no configuration of the nodes. Or it is
//! the user's own. Its credentials go with every service the provider
//! creates or updates, and Swarm hands them to the nodes that pull.

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder};
use ferrofaas_types::names::parse_image_reference;
use futures_util::StreamExt;

use crate::{ProviderError, Result};

/// Where the platform's own registry is reached, on every node.
pub const PLATFORM_REGISTRY: &str = "127.0.0.1:5000";

/// A registry that every node of the Swarm can pull from.
#[derive(Clone, Debug)]
pub struct Registry {
    /// `host[:port]`, as image references name it.
    pub address: String,
    /// User name and password, if it wants them.
    pub credentials: Option<(String, String)>,
}

impl Registry {
    /// Reads credentials from a file holding `user:password` (a Docker
    /// secret, say); `None` for a registry that wants none.
    pub fn new(address: &str, credentials_file: Option<&std::path::Path>) -> std::io::Result<Registry> {
        let address = address.trim().trim_end_matches('/');
        // A registry is what Docker's grammar reads as one in front of a name.
        let probe = format!("{address}/probe");
        if parse_image_reference(&probe).map(|r| r.path() == "probe").ok() != Some(true) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("--registry: {address:?} is not host[:port] (a registry as image names name it)"),
            ));
        }
        let credentials = match credentials_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("reading registry credentials {}: {e}", path.display()),
                    )
                })?;
                let (user, password) =
                    text.trim_end_matches(['\r', '\n']).split_once(':').ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: registry credentials are `user:password`", path.display()),
                        )
                    })?;
                Some((user.to_owned(), password.to_owned()))
            }
        };
        Ok(Registry { address: address.to_owned(), credentials })
    }

    /// What the engine and Swarm are given to push and pull.
    pub fn docker_credentials(&self) -> Option<DockerCredentials> {
        let (username, password) = self.credentials.clone()?;
        Some(DockerCredentials {
            username: Some(username),
            password: Some(password),
            serveraddress: Some(self.address.clone()),
            ..Default::default()
        })
    }

    /// The repository an image goes to in this registry, and its tag: its
    /// path without the registry it came from, its tag or `latest`
    /// (`ghcr.io/team/fn:1` -> `<registry>/team/fn`, `1`).
    pub fn repository_for<'a>(&self, image: &'a str) -> Result<(String, &'a str)> {
        let r = parse_image_reference(image).map_err(|why| ProviderError::invalid("image", why))?;
        Ok((format!("{}/{}", self.address, r.path()), r.tag.unwrap_or("latest")))
    }

    /// Pushes image `image` (whose id on `docker` is `id`) and returns the
    /// reference every node pulls: `<registry>/<repository>@sha256:...`.
    /// Layers the registry has are not sent again.
    pub async fn distribute(&self, docker: &Docker, image: &str, id: &str) -> Result<String> {
        let (repository, _) = self.repository_for(image)?;
        // Tagged by the image's id: a tag per version, never moved.
        let tag = id.trim_start_matches("sha256:").chars().take(16).collect::<String>();
        let digest = match self.push(docker, id, image, &repository, &tag).await? {
            Some(d) => d,
            None => {
                let inspect = docker
                    .inspect_image(id)
                    .await
                    .map_err(|e| ProviderError::internal("inspecting the pushed image", e))?;
                let prefix = format!("{repository}@");
                inspect
                    .repo_digests
                    .unwrap_or_default()
                    .iter()
                    .find_map(|d| d.strip_prefix(&prefix).map(str::to_owned))
                    .ok_or_else(|| {
                        ProviderError::internal("pushing the image", "the registry gave no digest")
                    })?
            }
        };
        Ok(format!("{repository}@{digest}"))
    }

    /// Pushes image `name` (`repo:tag`, as this engine has it) under the
    /// same tag, for another gateway of the Swarm to find ([`Registry::fetch`]).
    pub async fn publish(&self, docker: &Docker, name: &str) -> Result<()> {
        let (repository, tag) = self.repository_for(name)?;
        self.push(docker, name, name, &repository, tag).await.map(|_| ())
    }

    /// Pulls image `name` (`repo:tag`) from the registry and tags it `name`
    /// on this engine: `false` if the registry has none.
    pub async fn fetch(&self, docker: &Docker, name: &str) -> Result<bool> {
        let (repository, tag) = self.repository_for(name)?;
        let options = CreateImageOptionsBuilder::default().from_image(&repository).tag(tag).build();
        let mut stream = docker.create_image(Some(options), None, self.docker_credentials());
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) if info.error_detail.is_none() => {}
                // "manifest unknown", "not found": it is not there.
                Ok(_) | Err(_) => return Ok(false),
            }
        }
        let local = parse_image_reference(name).map_err(|why| ProviderError::invalid("image", why))?.name;
        let options = TagImageOptionsBuilder::default().repo(local).tag(tag).build();
        docker
            .tag_image(&format!("{repository}:{tag}"), Some(options))
            .await
            .map_err(|e| ProviderError::internal("tagging a pulled image", e))?;
        Ok(true)
    }

    /// Tags `source` as `repository:tag` and pushes it; the digest, if the
    /// engine said it.
    async fn push(
        &self,
        docker: &Docker,
        source: &str,
        image: &str,
        repository: &str,
        tag: &str,
    ) -> Result<Option<String>> {
        let options = TagImageOptionsBuilder::default().repo(repository).tag(tag).build();
        docker
            .tag_image(source, Some(options))
            .await
            .map_err(|e| ProviderError::internal("tagging the image for the registry", e))?;
        let options = PushImageOptionsBuilder::default().tag(tag).build();
        let mut stream = docker.push_image(repository, Some(options), self.docker_credentials());
        let mut digest = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.unreachable(image, &e.to_string()))?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(self.unreachable(image, &message));
            }
            // `<tag>: digest: sha256:<hex> size: <n>`
            if let Some(status) = info.status
                && let Some(rest) = status.split("digest: ").nth(1)
            {
                digest = rest.split_whitespace().next().map(str::to_owned);
            }
        }
        Ok(digest)
    }

    fn unreachable(&self, image: &str, why: &str) -> ProviderError {
        let hint = if self.address == PLATFORM_REGISTRY {
            " (the platform's registry, the ferrofaas-registry service that `faas swarm up` runs: \
             see `docker service ps ferrofaas-registry`)"
        } else {
            ""
        };
        ProviderError::Unavailable(format!(
            "could not push image {image} to the registry at {}{hint}: {why}",
            self.address
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry { address: PLATFORM_REGISTRY.into(), credentials: None }
    }

    #[test]
    fn repositories_drop_their_registry_tag_and_digest() {
        let r = registry();
        let repo = |image: &str| r.repository_for(image).unwrap().0;
        assert_eq!(repo("hello"), "127.0.0.1:5000/hello");
        assert_eq!(repo("hello:latest"), "127.0.0.1:5000/hello");
        assert_eq!(repo("team/fn:1.2"), "127.0.0.1:5000/team/fn");
        assert_eq!(repo("ghcr.io/team/fn:1"), "127.0.0.1:5000/team/fn");
        assert_eq!(repo("localhost:5000/fn"), "127.0.0.1:5000/fn");
        assert_eq!(repo(&format!("127.0.0.1:5000/fn@sha256:{}", "0".repeat(64))), "127.0.0.1:5000/fn");
        assert_eq!(repo("localhost/fn"), "127.0.0.1:5000/fn");
        assert_eq!(r.repository_for("team/fn:1.2").unwrap().1, "1.2");
        assert_eq!(r.repository_for("hello").unwrap().1, "latest");
        assert!(r.repository_for("Bad Name").is_err());
    }

    #[test]
    fn addresses_and_credentials_are_checked() {
        assert!(Registry::new("registry.example.com:443", None).is_ok());
        assert!(Registry::new("http://registry", None).is_err());
        assert!(Registry::new("", None).is_err());
        assert!(Registry::new("a b", None).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth");
        std::fs::write(&file, "ferrofaas:p:w\n").unwrap();
        let r = Registry::new("127.0.0.1:5000", Some(&file)).unwrap();
        assert_eq!(r.credentials, Some(("ferrofaas".into(), "p:w".into())));
        assert_eq!(r.docker_credentials().unwrap().serveraddress.as_deref(), Some("127.0.0.1:5000"));
        std::fs::write(&file, "nocolon").unwrap();
        assert!(Registry::new("127.0.0.1:5000", Some(&file)).is_err());
    }
}
