//! A function as a Swarm service: the service spec made from a deployment
//! (image, environment, secrets, limits, placement, rolling updates, the
//! watchdog's health check), read back from the service, and updated at
//! the version it was read at.

use super::*;

/// A function's service as this provider reads it back.
pub(super) struct FunctionService {
    pub(super) id: String,
    pub(super) version: u64,
    pub(super) spec: ServiceSpec,
    pub(super) deployment: FunctionDeployment,
    pub(super) replicas: u64,
    pub(super) created_at: String,
}

impl FunctionService {
    pub(super) fn from(service: bollard::models::Service, start_interval: bool) -> Option<FunctionService> {
        let mut spec = service.spec?;
        if spec.labels.as_ref().is_some_and(|l| l.contains_key(LABEL_HEALTH))
            && let Some(container) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut())
        {
            container.health_check = Some(watchdog_health_check(start_interval));
        }
        let labels = spec.labels.as_ref()?;
        labels.get(LABEL_FUNCTION)?;
        let deployment: FunctionDeployment = serde_json::from_str(labels.get(LABEL_SPEC)?).ok()?;
        let replicas =
            spec.mode.as_ref().and_then(|m| m.replicated.as_ref()).and_then(|r| r.replicas).unwrap_or(0);
        Some(FunctionService {
            id: service.id?,
            version: service.version.and_then(|v| v.index).unwrap_or(0),
            deployment,
            replicas: replicas.max(0) as u64,
            created_at: service.created_at.unwrap_or_default(),
            spec,
        })
    }
}

impl SwarmProvider {
    /// The service spec of a deployment.
    pub(super) async fn service_spec(&self, spec: &FunctionDeployment, replicas: u64) -> Result<ServiceSpec> {
        // An image another gateway built is in the registry under its name.
        if let Some(registry) = &self.registry
            && self.docker.inspect_image(&spec.image).await.is_err()
        {
            let _ = registry.fetch(&self.docker, &spec.image).await;
        }
        let FunctionImage { id, env, runs_watchdog, arch } =
            function_image(&self.docker, spec, ENV_DEFAULTS).await?;
        // Every node pulls the same version from the registry; without one,
        // the id (nodes that lack it cannot run the function).
        let image = match &self.registry {
            Some(registry) => registry.distribute(&self.docker, &spec.image, &id).await?,
            None => id,
        };
        let secrets = self.secret_refs(&spec.secrets).await?;
        let mut labels: HashMap<String, String> =
            spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.insert(LABEL_FUNCTION.into(), spec.service.clone());
        labels.insert(LABEL_NAMESPACE.into(), spec.namespace.clone());
        let container_labels = labels.clone();
        let json =
            serde_json::to_string(spec).map_err(|e| ProviderError::internal("encoding the spec", e))?;
        labels.insert(LABEL_SPEC.into(), json);
        let (memory, nano_cpus) = limits(spec.limits.as_ref());
        let (reserve_memory, reserve_cpus) = limits(spec.requests.as_ref());
        let hardening = Hardening::of(spec, self.pids_limit)?;
        let mounts = spec.read_only_root_filesystem.then(|| {
            vec![Mount {
                target: Some("/tmp".into()),
                typ: Some(MountType::TMPFS),
                tmpfs_options: Some(MountTmpfsOptions { size_bytes: Some(64 << 20), ..Default::default() }),
                ..Default::default()
            }]
        });
        // Long enough for the drain announcement and in-flight requests.
        let write_timeout = spec
            .env_vars
            .get("write_timeout")
            .and_then(|v| ferrofaas_types::duration::parse(v))
            .unwrap_or(Duration::from_secs(10));
        let stop_grace = Duration::from_secs(2) + write_timeout + Duration::from_secs(2);
        let health = runs_watchdog.then(|| watchdog_health_check(self.start_interval));
        if runs_watchdog {
            labels.insert(LABEL_HEALTH.into(), "watchdog".into());
        }
        let container = TaskSpecContainerSpec {
            image: Some(image),
            labels: Some(container_labels),
            env: Some(env),
            read_only: Some(spec.read_only_root_filesystem),
            mounts,
            secrets: Some(secrets),
            init: Some(true),
            capability_drop: Some(hardening.cap_drop),
            capability_add: Some(hardening.cap_add),
            // Engines before API 1.46 ignore it; the watchdog sets it then.
            privileges: Some(TaskSpecContainerSpecPrivileges {
                no_new_privileges: Some(true),
                ..Default::default()
            }),
            stop_grace_period: Some(stop_grace.as_nanos() as i64),
            health_check: health,
            ..Default::default()
        };
        let resources = TaskSpecResources {
            limits: Some(Limit { memory_bytes: memory, nano_cpus, pids: Some(hardening.pids_limit) }),
            reservations: Some(ResourceObject {
                memory_bytes: reserve_memory,
                nano_cpus: reserve_cpus,
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(ServiceSpec {
            name: Some(spec.service.clone()),
            labels: Some(labels),
            task_template: Some(TaskSpec {
                container_spec: Some(container),
                resources: Some(resources),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                    delay: Some(Duration::from_millis(500).as_nanos() as i64),
                    ..Default::default()
                }),
                // Only nodes whose architecture the image is built for
                // (the Swarm matches `amd64` to a node's `x86_64`).
                placement: Some(TaskSpecPlacement {
                    constraints: Some(spec.constraints.clone()),
                    platforms: arch.map(|arch| {
                        vec![Platform { architecture: Some(arch.name().into()), os: Some("linux".into()) }]
                    }),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(self.network.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(replicas as i64) }),
                ..Default::default()
            }),
            update_config: Some(ServiceSpecUpdateConfig {
                parallelism: Some(1),
                order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
                failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
                monitor: Some(Duration::from_secs(1).as_nanos() as i64),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// `update_service` at the version it was read at, read again and
    /// retried if someone else changed it meanwhile.
    pub(super) async fn update_service(
        &self,
        function: &FunctionRef,
        change: impl Fn(&FunctionService) -> Result<Option<ServiceSpec>>,
    ) -> Result<()> {
        for _ in 0..5 {
            let current = self.service(function).await?;
            let Some(spec) = change(&current)? else { return Ok(()) };
            let options = UpdateServiceOptionsBuilder::default().version(current.version as i32).build();
            match self.docker.update_service(&current.id, spec, options, self.registry_credentials()).await {
                Ok(_) => {
                    self.router.wake.notify_one();
                    return Ok(());
                }
                Err(e) if is_out_of_sequence(&e) => continue,
                Err(e) => return Err(ProviderError::internal("updating a service", e)),
            }
        }
        Err(ProviderError::Conflict(format!("function {} kept changing; try again", function.name)))
    }
}

/// `faas-watchdog --ready`, as often as the engine allows cheaply.
pub(super) fn watchdog_health_check(start_interval: bool) -> HealthConfig {
    let interval = if start_interval { HEALTH_INTERVAL_AFTER_START } else { HEALTH_INTERVAL };
    HealthConfig {
        test: Some(vec!["CMD".into(), "/usr/bin/faas-watchdog".into(), "--ready".into()]),
        interval: Some(interval.as_nanos() as i64),
        timeout: Some(Duration::from_secs(3).as_nanos() as i64),
        retries: Some(3),
        start_period: Some(Duration::from_secs(120).as_nanos() as i64),
        start_interval: start_interval.then(|| HEALTH_START_INTERVAL.as_nanos() as i64),
    }
}
