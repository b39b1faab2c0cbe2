//! The deployment files under `deploy/` (Dockerfiles, Compose, Kustomize, Argo CD) checked
//! against the code they deploy.
//!
//! Nothing else runs them where FlashKart is built: there is no Docker engine and no cluster
//! here, so a wrong probe path, a port that drifted from the config, a file a kustomization
//! names but nobody wrote, or a secret pasted into a manifest would only show in production.
//! These tests parse every manifest and hold it against the real thing: the probe paths are
//! fetched from a cloud started with the ConfigMap's own `cloud.toml` (loaded by the cloud's
//! own config loader), the Dockerfiles' `COPY` sources and `cargo build -p` packages are looked
//! up in the workspace, and when `kustomize` (or `kubectl`) is on `PATH` every overlay is
//! rendered and checked as a cluster would receive it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use flashkart_cloud::CloudConfig;
use tokio_util::sync::CancellationToken;
use yaml_rust2::{Yaml, YamlLoader};

const DEPLOYMENT: &str = "flashkart-cloud";
const CONFIG_MAP: &str = "flashkart-cloud-config";
const CONFIG_FILE: &str = "cloud.toml";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

fn k8s() -> PathBuf {
    root().join("deploy/k8s")
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", rel(path)))
}

/// Every document of a YAML file (multi-document files included), empty documents dropped.
fn load_yaml(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", rel(path)))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", rel(&dir)));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn text<'a>(node: &'a Yaml, what: &str) -> &'a str {
    node.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {node:?}"))
}

fn list(node: &Yaml) -> &[Yaml] {
    node.as_vec().map_or(&[], Vec::as_slice)
}

fn kind(doc: &Yaml) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn name(doc: &Yaml) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

/// A string map (labels, selectors) as owned pairs.
fn string_map(node: &Yaml) -> BTreeMap<String, String> {
    node.as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A kustomization directory: its own file and the resources it brings in, followed through
/// `resources` that are directories (bases). Patches are not applied; they are checked on
/// their own, and by `kustomize build` when it is available.
#[derive(Debug)]
struct Kustomization {
    dir: PathBuf,
    file: Yaml,
    /// Every resource document, own and inherited, with the file it came from.
    docs: Vec<(PathBuf, Yaml)>,
}

impl Kustomization {
    fn load(dir: &Path) -> Self {
        let path = dir.join("kustomization.yaml");
        let file = load_yaml(&path)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{} is empty", rel(&path)));
        let mut docs = Vec::new();
        for entry in list(&file["resources"]) {
            let target = dir.join(text(entry, "a resources entry"));
            if target.is_dir() {
                docs.extend(Self::load(&target).docs);
            } else {
                docs.extend(load_yaml(&target).into_iter().map(|d| (target.clone(), d)));
            }
        }
        Self {
            dir: dir.to_path_buf(),
            file,
            docs,
        }
    }

    fn find(&self, kind_: &str, name_: &str) -> Option<&Yaml> {
        self.docs
            .iter()
            .map(|(_, d)| d)
            .find(|d| kind(d) == kind_ && name(d) == name_)
    }

    fn of_kind(&self, kind_: &str) -> Vec<&Yaml> {
        self.docs
            .iter()
            .map(|(_, d)| d)
            .filter(|d| kind(d) == kind_)
            .collect()
    }

    fn deployment(&self) -> &Yaml {
        self.find("Deployment", DEPLOYMENT)
            .unwrap_or_else(|| panic!("{} has no Deployment {DEPLOYMENT}", rel(&self.dir)))
    }

    /// The patches' documents (overlays).
    fn patches(&self) -> Vec<Yaml> {
        list(&self.file["patches"])
            .iter()
            .filter_map(|p| p["path"].as_str())
            .flat_map(|p| load_yaml(&self.dir.join(p)))
            .collect()
    }
}

fn base() -> Kustomization {
    Kustomization::load(&k8s().join("base"))
}

fn overlay(name_: &str) -> Kustomization {
    Kustomization::load(&k8s().join("overlays").join(name_))
}

fn overlays() -> Vec<PathBuf> {
    let dir = k8s().join("overlays");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", rel(&dir)))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no overlays under deploy/k8s/overlays");
    found
}

/// The only container of the cloud's pod.
fn cloud_container(deployment: &Yaml) -> &Yaml {
    let containers = list(&deployment["spec"]["template"]["spec"]["containers"]);
    assert_eq!(containers.len(), 1, "the cloud's pod has one container");
    &containers[0]
}

/// The container port a probe or a Service's targetPort names (by name or number).
fn resolve_port(container: &Yaml, port: &Yaml) -> i64 {
    let ports = list(&container["ports"]);
    if let Some(number) = port.as_i64() {
        assert!(
            ports
                .iter()
                .any(|p| p["containerPort"].as_i64() == Some(number)),
            "port {number} is not a containerPort of the cloud"
        );
        return number;
    }
    let wanted = text(port, "a port");
    ports
        .iter()
        .find(|p| p["name"].as_str() == Some(wanted))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port is named {wanted:?}"))
}

/// The cloud's config file in the base, as the ConfigMap generator names it.
fn configmap_cloud_toml(base: &Kustomization) -> PathBuf {
    let generator = list(&base.file["configMapGenerator"])
        .iter()
        .find(|g| g["name"].as_str() == Some(CONFIG_MAP))
        .unwrap_or_else(|| panic!("the base generates no ConfigMap {CONFIG_MAP}"));
    // Each entry is `file` (the key is its name) or `key=file`.
    list(&generator["files"])
        .iter()
        .map(|f| text(f, "a configMapGenerator file"))
        .map(|f| f.split_once('=').unwrap_or((f, f)))
        .find(|(key, file)| {
            *key == CONFIG_FILE || (key == file && file.rsplit('/').next() == Some(CONFIG_FILE))
        })
        .map(|(_, file)| base.dir.join(file))
        .unwrap_or_else(|| panic!("{CONFIG_MAP} has no {CONFIG_FILE}"))
}

fn load_cloud_config(path: &Path) -> CloudConfig {
    CloudConfig::load(path)
        .unwrap_or_else(|e| panic!("the cloud's config loader refuses {}: {e}", rel(path)))
}

/// Where the pod mounts `volume`.
fn mount_path<'a>(container: &'a Yaml, volume: &str) -> &'a str {
    list(&container["volumeMounts"])
        .iter()
        .find(|m| m["name"].as_str() == Some(volume))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or_else(|| panic!("the cloud container does not mount volume {volume:?}"))
}

fn env_value<'a>(container: &'a Yaml, var: &str) -> Option<&'a str> {
    list(&container["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some(var))
        .and_then(|e| e["value"].as_str())
}

fn pod_volume<'a>(deployment: &'a Yaml, volume: &str) -> &'a Yaml {
    list(&deployment["spec"]["template"]["spec"]["volumes"])
        .iter()
        .find(|v| v["name"].as_str() == Some(volume))
        .unwrap_or_else(|| panic!("the cloud's pod has no volume {volume:?}"))
}

/// The probe paths of the cloud's container: (probe, path, port).
fn probes(container: &Yaml) -> Vec<(&'static str, String, i64)> {
    ["readinessProbe", "livenessProbe", "startupProbe"]
        .into_iter()
        .filter(|p| !container[*p].is_badvalue())
        .map(|p| {
            let get = &container[p]["httpGet"];
            let path = text(&get["path"], p).to_owned();
            (p, path, resolve_port(container, &get["port"]))
        })
        .collect()
}

#[test]
fn every_manifest_parses_and_every_kustomization_names_files_that_exist() {
    let mut files = yaml_files(&k8s());
    files.extend(yaml_files(&root().join("deploy/argocd")));
    assert!(files.len() > 5, "found only {files:?}");
    let mut kustomizations = 0;
    for path in &files {
        for doc in load_yaml(path) {
            assert!(
                doc["apiVersion"].as_str().is_some_and(|v| !v.is_empty()),
                "{}: a document without apiVersion",
                rel(path)
            );
            assert!(
                !kind(&doc).is_empty(),
                "{}: a document without kind",
                rel(path)
            );
            if kind(&doc) != "Kustomization"
                && path.file_name() != Some("kustomization.yaml".as_ref())
            {
                assert!(
                    !name(&doc).is_empty(),
                    "{}: a resource without a name",
                    rel(path)
                );
            }
        }
        if path.file_name() != Some("kustomization.yaml".as_ref()) {
            continue;
        }
        kustomizations += 1;
        let dir = path.parent().expect("a file has a directory");
        let file = &load_yaml(path)[0];
        assert_eq!(kind(file), "Kustomization", "{}", rel(path));
        let mut named: Vec<String> = Vec::new();
        for entry in list(&file["resources"]) {
            let target = dir.join(text(entry, "a resources entry"));
            assert!(
                target.is_file() || target.join("kustomization.yaml").is_file(),
                "{} names resource {} which does not exist",
                rel(path),
                rel(&target)
            );
            named.push(text(entry, "resource").to_owned());
        }
        for generator in list(&file["configMapGenerator"]) {
            for entry in list(&generator["files"]) {
                let source = text(entry, "a generator file");
                let source = source.rsplit('=').next().unwrap_or(source);
                assert!(
                    dir.join(source).is_file(),
                    "{} generates from {source}, which does not exist",
                    rel(path)
                );
            }
        }
        for patch in list(&file["patches"]) {
            let target = text(&patch["path"], "a patch path");
            assert!(
                dir.join(target).is_file(),
                "{} names patch {target}, which does not exist",
                rel(path)
            );
            named.push(target.to_owned());
        }
        for old in ["patchesStrategicMerge", "patchesJson6902", "bases", "vars"] {
            assert!(
                file[old].is_badvalue(),
                "{}: `{old}` is deprecated in kustomize v5; use resources/patches",
                rel(path)
            );
        }
        // Secrets are created by the operator, never generated from files in Git.
        assert!(
            file["secretGenerator"].is_badvalue(),
            "{}: no secretGenerator: Secrets are created by the operator",
            rel(path)
        );
        // A manifest beside a kustomization that it does not name is dead (or forgotten).
        for sibling in yaml_files(dir) {
            if sibling.parent() != Some(dir) || sibling == *path {
                continue;
            }
            let file_name = sibling
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a UTF-8 file name");
            assert!(
                named.iter().any(|n| n == file_name),
                "{} is not named by {}",
                rel(&sibling),
                rel(path)
            );
        }
    }
    assert!(
        kustomizations >= 3,
        "base and two overlays: {kustomizations}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_deployment_agrees_with_its_config_its_service_and_the_running_cloud() {
    let base = base();
    let deployment = base.deployment();
    let container = cloud_container(deployment);
    let pod_labels = string_map(&deployment["spec"]["template"]["metadata"]["labels"]);
    let selector = string_map(&deployment["spec"]["selector"]["matchLabels"]);
    assert!(
        selects(&selector, &pod_labels),
        "the Deployment's selector {selector:?} does not select its pods {pod_labels:?}"
    );

    // The ConfigMap's cloud.toml, through the cloud's own loader, and where the pod finds it.
    let toml_path = configmap_cloud_toml(&base);
    let config = load_cloud_config(&toml_path);
    let config_volume = list(&deployment["spec"]["template"]["spec"]["volumes"])
        .iter()
        .find(|v| v["configMap"]["name"].as_str() == Some(CONFIG_MAP))
        .unwrap_or_else(|| panic!("the pod mounts no ConfigMap {CONFIG_MAP}"));
    let config_dir = mount_path(container, text(&config_volume["name"], "volume name"));
    assert_eq!(
        env_value(container, "FLASHKART_CLOUD_CONFIG"),
        Some(format!("{config_dir}/{CONFIG_FILE}").as_str()),
        "FLASHKART_CLOUD_CONFIG must name the mounted {CONFIG_FILE}"
    );
    assert_eq!(
        list(&container["args"]).first().and_then(Yaml::as_str),
        Some("run"),
        "the container runs `flashkart-cloud run`"
    );

    // The data directory is the PersistentVolumeClaim; what else the cloud writes is on an
    // emptyDir, since the root filesystem is read-only.
    let data = pod_volume(deployment, "data");
    let claim = text(&data["persistentVolumeClaim"]["claimName"], "claimName");
    let pvc = base
        .find("PersistentVolumeClaim", claim)
        .unwrap_or_else(|| panic!("no PersistentVolumeClaim {claim}"));
    assert!(
        list(&pvc["spec"]["accessModes"])
            .iter()
            .any(|m| m.as_str() == Some("ReadWriteOnce")),
        "the SQLite volume is ReadWriteOnce"
    );
    assert_eq!(
        Path::new(mount_path(container, "data")),
        config.data_dir,
        "the cloud's data_dir is the volume's mount"
    );
    let extension_dir = config
        .extension_dir
        .as_ref()
        .expect("extension_dir is set: the user's cache directory is on the read-only root");
    let writable: Vec<&str> = list(&container["volumeMounts"])
        .iter()
        .filter(|m| m["readOnly"].as_bool() != Some(true))
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert!(
        writable.iter().any(|m| extension_dir.starts_with(m)),
        "extension_dir {} is on no writable mount ({writable:?})",
        extension_dir.display()
    );

    // Ports: the config's listener, the containerPort, the probes, the Service.
    let http_port = resolve_port(container, &Yaml::String("http".into()));
    assert_eq!(
        i64::from(config.listen.port()),
        http_port,
        "cloud.toml listens on {}, the container exposes {http_port}",
        config.listen
    );
    assert!(
        config.listen.ip().is_unspecified(),
        "in a pod the cloud must listen on every interface, not {}",
        config.listen
    );
    let services: Vec<&Yaml> = base
        .of_kind("Service")
        .into_iter()
        .filter(|s| !s["spec"]["selector"].is_badvalue())
        .collect();
    assert_eq!(services.len(), 1, "one Service selects the cloud's pods");
    let service = services[0];
    assert!(
        selects(&string_map(&service["spec"]["selector"]), &pod_labels),
        "the Service does not select the cloud's pods"
    );
    for port in list(&service["spec"]["ports"]) {
        assert_eq!(
            resolve_port(container, &port["targetPort"]),
            http_port,
            "the Service's targetPort is the cloud's port"
        );
    }

    let probes = probes(container);
    let kinds: BTreeSet<&str> = probes.iter().map(|(p, _, _)| *p).collect();
    assert!(
        kinds.contains("readinessProbe") && kinds.contains("livenessProbe"),
        "the cloud needs readiness and liveness probes: {kinds:?}"
    );
    for (probe, _, port) in &probes {
        assert_eq!(*port, http_port, "{probe} asks another port");
    }

    // Resources and the security context.
    for section in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !container["resources"][section][resource].is_badvalue(),
                "the cloud container sets no resources.{section}.{resource}"
            );
        }
    }
    let pod_security = &deployment["spec"]["template"]["spec"]["securityContext"];
    let security = &container["securityContext"];
    assert_eq!(
        security["runAsNonRoot"]
            .as_bool()
            .or(pod_security["runAsNonRoot"].as_bool()),
        Some(true),
        "runAsNonRoot"
    );
    let uid = security["runAsUser"]
        .as_i64()
        .or(pod_security["runAsUser"].as_i64())
        .expect("runAsUser is set (the image's numeric uid)");
    assert_ne!(uid, 0, "the cloud does not run as root");
    assert_eq!(
        Some(uid.to_string()),
        dockerfile("cloud.Dockerfile").runtime_user_id(),
        "runAsUser is the user of the cloud's image"
    );
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));

    // The image the kustomization's `images` entry retags.
    let image = text(&container["image"], "image");
    assert!(
        list(&base.file["images"])
            .iter()
            .any(|i| i["name"].as_str() == Some(image)),
        "the base's `images` does not name the container's image {image}"
    );

    // The probes (and Compose's health check) against the real cloud, started with this very
    // cloud.toml, on a free loopback port and its own data.
    let mut paths: BTreeSet<String> = probes.iter().map(|(_, p, _)| p.clone()).collect();
    paths.insert(compose_health_path());
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config;
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.data_dir = dir.path().join("data");
    config.extension_dir = Some(dir.path().join("extension"));
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(config, shutdown.clone())
        .await
        .expect("the cloud starts with the ConfigMap's config");
    let client = reqwest::Client::new();
    for path in &paths {
        let url = format!("http://{}{path}", running.addr);
        let response = client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(
            response.status(),
            reqwest::StatusCode::OK,
            "the probe path {path} is not a route the cloud serves"
        );
    }
    shutdown.cancel();
    running.wait().await.expect("the cloud stops cleanly");
}

#[test]
fn the_base_is_one_writer_and_only_the_postgres_overlay_scales() {
    let base = base();
    let deployment = base.deployment();
    assert_eq!(
        deployment["spec"]["replicas"].as_i64(),
        Some(1),
        "SQLite on a ReadWriteOnce volume: one cloud pod"
    );
    assert_eq!(
        deployment["spec"]["strategy"]["type"].as_str(),
        Some("Recreate"),
        "a rollout must stop the old pod before the new one opens the databases"
    );
    let pod_labels = string_map(&deployment["spec"]["template"]["metadata"]["labels"]);
    for k in ["HorizontalPodAutoscaler", "PodDisruptionBudget"] {
        assert!(base.of_kind(k).is_empty(), "the base has a {k}");
    }

    for dir in overlays() {
        let overlay = Kustomization::load(&dir);
        let name_ = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 name")
            .to_owned();
        let replicas = overlay
            .patches()
            .iter()
            .filter(|p| kind(p) == "Deployment" && name(p) == DEPLOYMENT)
            .find_map(|p| p["spec"]["replicas"].as_i64())
            .unwrap_or(1);
        let hpas = overlay.of_kind("HorizontalPodAutoscaler");
        for hpa in &hpas {
            let target = &hpa["spec"]["scaleTargetRef"];
            assert_eq!(
                target["kind"].as_str(),
                Some("Deployment"),
                "{name_}: HPA target"
            );
            assert_eq!(
                target["name"].as_str(),
                Some(DEPLOYMENT),
                "{name_}: HPA target"
            );
            assert_eq!(
                target["apiVersion"].as_str(),
                Some("apps/v1"),
                "{name_}: HPA"
            );
        }
        for pdb in overlay.of_kind("PodDisruptionBudget") {
            let selector = string_map(&pdb["spec"]["selector"]["matchLabels"]);
            assert!(
                selects(&selector, &pod_labels),
                "{name_}: the PodDisruptionBudget {selector:?} does not select the cloud's pods"
            );
            if replicas < 2 && hpas.is_empty() {
                // One pod: a budget that demands one available would block every drain.
                assert!(
                    pdb["spec"]["minAvailable"].is_badvalue(),
                    "{name_}: minAvailable on a single replica blocks node drains"
                );
                assert!(
                    pdb["spec"]["maxUnavailable"].as_i64().unwrap_or(0) >= 1,
                    "{name_}: one replica must be evictable"
                );
            }
        }
        let scales = replicas > 1 || !hpas.is_empty();
        let kustomization = read(&dir.join("kustomization.yaml"));
        if scales {
            // Several pods are right only on the PostgreSQL backend, each with a data directory
            // of its own: the overlay says so and its patches make it so (the rendered output is
            // checked too when kustomize is installed).
            assert!(
                kustomization.contains("PostgreSQL") && !kustomization.contains("NOT DEPLOYABLE"),
                "{name_} runs several cloud pods but does not say it runs on PostgreSQL"
            );
            let patches = overlay.patches();
            let deployment_patches: Vec<&Yaml> = patches
                .iter()
                .filter(|p| kind(p) == "Deployment" && name(p) == DEPLOYMENT)
                .collect();
            let env: Vec<Yaml> = deployment_patches
                .iter()
                .flat_map(|p| list(&p["spec"]["template"]["spec"]["containers"]))
                .filter(|c| c["name"].as_str() == Some("cloud"))
                .flat_map(|c| list(&c["env"]).iter().cloned())
                .collect();
            let data = deployment_patches
                .iter()
                .flat_map(|p| list(&p["spec"]["template"]["spec"]["volumes"]))
                .find(|v| v["name"].as_str() == Some("data"))
                .unwrap_or_else(|| panic!("{name_}: no patch replaces the data volume"));
            assert!(
                data["persistentVolumeClaim"].is_null(),
                "{name_}: the data volume's patch must remove the claim \
                 (`persistentVolumeClaim: null`), or the strategic merge keeps both sources"
            );
            let http_port = resolve_port(
                cloud_container(base.deployment()),
                &Yaml::String("http".into()),
            );
            assert_runs_on_postgres(&name_, &env, data, http_port);
            // The base's claim is deleted from the output: nothing may wait for it.
            let claim = text(
                &pod_volume(base.deployment(), "data")["persistentVolumeClaim"]["claimName"],
                "the base's claimName",
            );
            assert!(
                patches.iter().any(|p| kind(p) == "PersistentVolumeClaim"
                    && name(p) == claim
                    && p["$patch"].as_str() == Some("delete")),
                "{name_}: no `$patch: delete` patch removes the base's claim {claim}"
            );
            for hpa in &hpas {
                assert!(
                    hpa["spec"]["minReplicas"].as_i64().unwrap_or(1) >= 2,
                    "{name_}: HPA minReplicas"
                );
            }
        }
    }
    let single = overlay("single");
    assert!(single.of_kind("HorizontalPodAutoscaler").is_empty());
    assert_eq!(single.of_kind("PodDisruptionBudget").len(), 1);
    let postgres = overlay("postgres");
    assert_eq!(postgres.of_kind("HorizontalPodAutoscaler").len(), 1);
    let pdb = postgres.of_kind("PodDisruptionBudget");
    assert_eq!(pdb.len(), 1);
    assert_eq!(pdb[0]["spec"]["minAvailable"].as_i64(), Some(1));

    // The external PostgreSQL service of the base is a name only (nothing selects pods).
    let pg = base
        .find("Service", "flashkart-postgres")
        .expect("the base names the external PostgreSQL service");
    assert_eq!(pg["spec"]["type"].as_str(), Some("ExternalName"));
    assert!(pg["spec"]["selector"].is_badvalue());
}

/// A cloud pod of several on PostgreSQL, from its container's environment and its data volume
/// (an overlay's patches, or its rendered Deployment): the database URL and the admin token
/// every pod shares come from Secrets, never a literal; the pod advertises its own IP from the
/// downward API at the port it listens on, defined after POD_IP (a `$(VAR)` reference expands
/// only variables defined earlier); its data directory is an emptyDir of its own.
fn assert_runs_on_postgres(what: &str, env: &[Yaml], data: &Yaml, http_port: i64) {
    let position = |var: &str| {
        env.iter()
            .position(|e| e["name"].as_str() == Some(var))
            .unwrap_or_else(|| panic!("{what}: the cloud's container does not set {var}"))
    };
    for (var, secret, key) in [
        (
            "FLASHKART_DATABASE_URL",
            "flashkart-cloud-postgres",
            "database-url",
        ),
        (
            "FLASHKART_ADMIN_TOKEN",
            "flashkart-cloud-secrets",
            "admin-token",
        ),
    ] {
        let entry = &env[position(var)];
        assert!(
            entry["value"].is_badvalue(),
            "{what}: {var} has a literal value; reference a Secret"
        );
        let reference = &entry["valueFrom"]["secretKeyRef"];
        assert_eq!(
            (reference["name"].as_str(), reference["key"].as_str()),
            (Some(secret), Some(key)),
            "{what}: {var} comes from Secret {secret}, key {key}"
        );
        assert_ne!(
            reference["optional"].as_bool(),
            Some(true),
            "{what}: without {var} a pod would run alone (SQLite on an emptyDir, or its own \
             admin token): it must not start"
        );
    }
    let pod_ip = &env[position("POD_IP")];
    assert_eq!(
        pod_ip["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("status.podIP"),
        "{what}: POD_IP from the downward API"
    );
    let advertise = position("FLASHKART_ADVERTISE_URL");
    assert_eq!(
        env[advertise]["value"].as_str(),
        Some(format!("http://$(POD_IP):{http_port}").as_str()),
        "{what}: each pod advertises its own IP at the cloud's port"
    );
    assert!(
        position("POD_IP") < advertise,
        "{what}: POD_IP must be defined before FLASHKART_ADVERTISE_URL refers to it"
    );
    assert!(
        data["emptyDir"].as_hash().is_some(),
        "{what}: each pod's data directory is an emptyDir: {data:?}"
    );
    assert!(
        data["persistentVolumeClaim"].as_hash().is_none(),
        "{what}: the data volume still names a claim: {data:?}"
    );
}

/// Environment variable names that carry credentials.
fn looks_secret(var: &str) -> bool {
    let var = var.to_ascii_uppercase();
    [
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "KEY",
        "DATABASE_URL",
        "PIN",
    ]
    .iter()
    .any(|w| var.contains(w))
}

#[test]
fn no_secret_value_is_committed_and_every_secret_is_referenced_and_documented() {
    let docs_deploy = read(&root().join("docs/deploy.md"));
    let mut references = 0;
    let mut files = yaml_files(&k8s());
    files.extend(yaml_files(&root().join("deploy/argocd")));
    for path in &files {
        for doc in load_yaml(path) {
            assert_ne!(
                kind(&doc),
                "Secret",
                "{}: Secrets are created by the operator, not committed",
                rel(path)
            );
            let pod = if kind(&doc) == "Deployment" {
                &doc["spec"]["template"]["spec"]
            } else {
                continue;
            };
            let containers = list(&pod["containers"])
                .iter()
                .chain(list(&pod["initContainers"]));
            for container in containers {
                for env in list(&container["env"]) {
                    let var = text(&env["name"], "env name");
                    if looks_secret(var) {
                        assert!(
                            env["value"].is_badvalue(),
                            "{}: {var} has a literal value; reference a Secret",
                            rel(path)
                        );
                    }
                    let reference = &env["valueFrom"]["secretKeyRef"];
                    if reference.is_badvalue() {
                        continue;
                    }
                    references += 1;
                    let secret = text(&reference["name"], "secretKeyRef name");
                    let key = text(&reference["key"], "secretKeyRef key");
                    assert!(
                        docs_deploy.contains(&format!("create secret generic {secret}"))
                            && docs_deploy.contains(&format!("--from-literal={key}=")),
                        "docs/deploy.md does not show how to create Secret {secret} with key {key}"
                    );
                }
                assert!(
                    container["envFrom"].is_badvalue()
                        || list(&container["envFrom"])
                            .iter()
                            .all(|e| e["configMapRef"].is_badvalue()),
                    "{}: environment from a ConfigMap may carry secrets; use secretKeyRef",
                    rel(path)
                );
            }
        }
    }
    assert!(
        references >= 1,
        "the cloud's payment secrets come from a Secret"
    );

    // The ConfigMap's cloud.toml holds no credential: they come from the Secret (payments) or
    // are generated on the volume (the admin token).
    let config = load_cloud_config(&configmap_cloud_toml(&base()));
    assert!(config.admin_token.is_none(), "admin_token in a ConfigMap");
    assert!(
        config.payments.webhook_secret.is_none(),
        "payments.webhook_secret in a ConfigMap"
    );
    if let Some(stripe) = &config.payments.stripe {
        assert!(
            stripe.secret_key.expose().is_empty(),
            "[payments.stripe] secret_key in a ConfigMap"
        );
    }
    if let Some(smtp) = &config.notifications.smtp {
        assert!(smtp.password.is_none(), "the SMTP password in a ConfigMap");
    }
    assert!(
        config.notifications.webhook.is_none(),
        "[notifications.webhook] has a secret: not in a ConfigMap"
    );
}

#[test]
fn the_argo_application_deploys_the_single_overlay_of_this_repository() {
    let path = root().join("deploy/argocd/application.yaml");
    let docs = load_yaml(&path);
    let app = docs
        .iter()
        .find(|d| kind(d) == "Application")
        .expect("an Argo CD Application");
    assert_eq!(app["apiVersion"].as_str(), Some("argoproj.io/v1alpha1"));
    let source = &app["spec"]["source"];
    let source_path = text(&source["path"], "spec.source.path");
    let target = root().join(source_path);
    assert!(
        target.join("kustomization.yaml").is_file(),
        "the Application's path {source_path} is no kustomization in this repository"
    );
    assert!(
        !source_path.contains("postgres"),
        "the Application syncs overlays/single; the postgres overlay needs its Secrets and a \
         database first (docs/deploy.md)"
    );
    assert!(
        text(&source["repoURL"], "repoURL").contains("example.invalid"),
        "repoURL stays a placeholder the operator edits (marked EDIT)"
    );
    assert!(read(&path).contains("EDIT"), "the placeholder is marked");
    let namespace = base().file["namespace"]
        .as_str()
        .expect("the base sets a namespace")
        .to_owned();
    assert_eq!(
        app["spec"]["destination"]["namespace"].as_str(),
        Some(namespace.as_str())
    );
    let automated = &app["spec"]["syncPolicy"]["automated"];
    assert_eq!(automated["prune"].as_bool(), Some(true));
    assert_eq!(automated["selfHeal"].as_bool(), Some(true));
    assert!(
        list(&app["spec"]["syncPolicy"]["syncOptions"])
            .iter()
            .any(|o| o.as_str() == Some("CreateNamespace=true"))
    );
    // Pruning must never take the cloud's data with it.
    let pvc = base()
        .of_kind("PersistentVolumeClaim")
        .first()
        .map(|p| p["metadata"]["annotations"]["argocd.argoproj.io/sync-options"].clone())
        .expect("a PersistentVolumeClaim");
    assert!(
        pvc.as_str().is_some_and(|o| o.contains("Prune=false")),
        "the data volume is exempt from pruning"
    );
}

/// A Dockerfile reduced to its instructions (continuation lines joined, comments dropped),
/// grouped by build stage.
#[derive(Debug)]
struct Dockerfile {
    path: PathBuf,
    /// (stage name or index, instructions as (keyword, arguments)).
    stages: Vec<(String, Vec<(String, String)>)>,
    args: BTreeMap<String, String>,
}

fn dockerfile(file: &str) -> Dockerfile {
    let path = root().join("deploy/docker").join(file);
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read(&path).lines() {
        let trimmed = line.trim();
        // Comment lines are dropped, inside a continued instruction too (as Docker does).
        if trimmed.starts_with('#') || (current.is_empty() && trimmed.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut args = BTreeMap::new();
    for instruction in instructions {
        let (keyword, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((&instruction, ""));
        let keyword = keyword.to_ascii_uppercase();
        let rest = rest.trim().to_owned();
        if keyword == "FROM" {
            let name_ = rest
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .find(|w| w[0].eq_ignore_ascii_case("AS"))
                .map_or_else(|| stages.len().to_string(), |w| w[1].to_owned());
            stages.push((name_, vec![(keyword, rest)]));
        } else if let Some((_, stage)) = stages.last_mut() {
            stage.push((keyword, rest));
        } else if keyword == "ARG" {
            let (k, v) = rest.split_once('=').unwrap_or((&rest, ""));
            args.insert(k.to_owned(), v.to_owned());
        }
    }
    assert!(stages.len() >= 2, "{} is not multi-stage", rel(&path));
    Dockerfile { path, stages, args }
}

impl Dockerfile {
    fn runtime(&self) -> &[(String, String)] {
        &self.stages.last().expect("a stage").1
    }

    fn all(&self) -> impl Iterator<Item = (&str, &(String, String))> {
        self.stages
            .iter()
            .flat_map(|(s, i)| i.iter().map(move |i| (s.as_str(), i)))
    }

    /// The runtime stage's last USER, as a uid (a name is looked up in the useradd line).
    fn runtime_user_id(&self) -> Option<String> {
        let user = self
            .runtime()
            .iter()
            .rev()
            .find(|(k, _)| k == "USER")
            .map(|(_, v)| v.split(':').next().unwrap_or(v).to_owned())?;
        if user.chars().all(|c| c.is_ascii_digit()) {
            return Some(user);
        }
        self.runtime()
            .iter()
            .filter(|(k, v)| k == "RUN" && v.contains("useradd") && v.contains(&user))
            .find_map(|(_, v)| {
                let words: Vec<&str> = v.split_whitespace().collect();
                words
                    .windows(2)
                    .find(|w| w[0] == "--uid" || w[0] == "-u")
                    .map(|w| w[1].to_owned())
            })
    }
}

/// Workspace packages and their binaries.
fn workspace_packages() -> BTreeMap<String, BTreeSet<String>> {
    let manifest: toml::Table =
        toml::from_str(&read(&root().join("Cargo.toml"))).expect("Cargo.toml parses");
    let members = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace members");
    let mut packages = BTreeMap::new();
    for member in members {
        let dir = root().join(member.as_str().expect("a member path"));
        let manifest: toml::Table =
            toml::from_str(&read(&dir.join("Cargo.toml"))).expect("a member's Cargo.toml");
        let package = manifest["package"]["name"]
            .as_str()
            .expect("package name")
            .to_owned();
        let mut bins = BTreeSet::new();
        if dir.join("src/main.rs").is_file() {
            bins.insert(package.clone());
        }
        if let Some(declared) = manifest.get("bin").and_then(toml::Value::as_array) {
            bins.extend(
                declared
                    .iter()
                    .filter_map(|b| b.get("name")?.as_str().map(str::to_owned)),
            );
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("src/bin")) {
            for entry in entries.flatten() {
                if let Some(stem) = entry.path().file_stem().and_then(|s| s.to_str()) {
                    bins.insert(stem.to_owned());
                }
            }
        }
        packages.insert(package, bins);
    }
    packages
}

/// `.dockerignore` patterns, and whether one of them drops `path` from the build context.
fn docker_ignored(path: &str) -> bool {
    let ignore = read(&root().join(".dockerignore"));
    ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .any(|pattern| {
            let pattern = pattern.trim_end_matches('/');
            if let Some(name_) = pattern.strip_prefix("**/") {
                path.split('/').any(|c| c == name_)
            } else {
                path == pattern || path.starts_with(&format!("{pattern}/"))
            }
        })
}

#[test]
fn the_dockerfiles_copy_what_exists_build_real_packages_and_run_as_a_user() {
    let packages = workspace_packages();
    let ignore = read(&root().join(".dockerignore"));
    for needed in ["target", ".git", "node_modules"] {
        assert!(
            ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/').ends_with(needed)),
            ".dockerignore does not exclude {needed}"
        );
    }
    let workspace: toml::Table =
        toml::from_str(&read(&root().join("Cargo.toml"))).expect("Cargo.toml parses");
    let rust_version = workspace["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("workspace rust-version");

    // The daemons get images; the simulators and benchmark tools are not deployed.
    let images = [
        ("cloud.Dockerfile", "flashkart-cloud"),
        ("edge.Dockerfile", "flashkart-edge"),
    ];
    for (file, package) in images {
        let docker = dockerfile(file);
        let at = rel(&docker.path);
        let version = docker
            .args
            .get("RUST_VERSION")
            .unwrap_or_else(|| panic!("{at}: ARG RUST_VERSION"));
        let numbers =
            |v: &str| -> Vec<u32> { v.split('.').filter_map(|n| n.parse().ok()).collect() };
        assert!(
            numbers(version) >= numbers(rust_version)[..2].to_vec(),
            "{at}: Rust {version} is older than the workspace's rust-version {rust_version}"
        );
        let (first_stage, first) = &docker.stages[0];
        assert!(
            first[0].1.starts_with("rust:${RUST_VERSION}-bookworm"),
            "{at}: stage {first_stage} builds on the official rust bookworm image"
        );
        assert!(
            docker.runtime()[0].1.starts_with("debian:bookworm-slim"),
            "{at}: the runtime is debian:bookworm-slim"
        );

        let mut built = None;
        for (stage, (keyword, rest)) in docker.all() {
            if keyword == "COPY" || keyword == "ADD" {
                let words: Vec<&str> = rest.split_whitespace().collect();
                if words.iter().any(|w| w.starts_with("--from=")) {
                    continue;
                }
                let sources: Vec<&str> = words
                    .iter()
                    .copied()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                assert!(sources.len() >= 2, "{at}: COPY {rest}");
                for source in &sources[..sources.len() - 1] {
                    let source = source.trim_end_matches('/');
                    assert!(
                        root().join(source).exists(),
                        "{at} (stage {stage}) copies {source}, which is not in the repository"
                    );
                    assert!(
                        !docker_ignored(source),
                        "{at} copies {source}, which .dockerignore leaves out of the context"
                    );
                }
            }
            if keyword == "RUN" && rest.contains("cargo build") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                assert!(words.contains(&"--release"), "{at}: a release build");
                assert!(words.contains(&"--locked"), "{at}: builds with Cargo.lock");
                let after = |flag: &str| {
                    words
                        .windows(2)
                        .find(|w| w[0] == flag)
                        .map(|w| w[1].to_owned())
                };
                let p = after("-p").unwrap_or_else(|| panic!("{at}: cargo build -p <package>"));
                let bins = packages
                    .get(&p)
                    .unwrap_or_else(|| panic!("{at} builds {p}, which is no workspace package"));
                if let Some(bin) = after("--bin") {
                    assert!(bins.contains(&bin), "{at}: {p} has no binary {bin}");
                }
                built = Some(p);
            }
        }
        assert_eq!(built.as_deref(), Some(package), "{at} builds {package}");

        // Every workspace member's manifest is copied, or cargo cannot load the workspace.
        let copied: BTreeSet<String> = docker
            .all()
            .filter(|(_, (k, r))| k == "COPY" && !r.contains("--from="))
            .flat_map(|(_, (_, r))| {
                let words: Vec<String> = r.split_whitespace().map(str::to_owned).collect();
                words[..words.len().saturating_sub(1)].to_vec()
            })
            .collect();
        let members = workspace["workspace"]["members"]
            .as_array()
            .expect("workspace members");
        for member in members {
            let member = member.as_str().expect("member");
            let top = member.split('/').next().unwrap_or(member);
            assert!(
                copied.contains(member) || copied.contains(top),
                "{at} does not copy workspace member {member}"
            );
        }
        for needed in ["Cargo.toml", "Cargo.lock"] {
            assert!(copied.contains(needed), "{at} does not copy {needed}");
        }

        let runtime = docker.runtime();
        let user = docker
            .runtime_user_id()
            .unwrap_or_else(|| panic!("{at}: the runtime stage sets no USER"));
        assert!(user != "0" && user != "root", "{at}: runs as root");
        let entrypoint = runtime
            .iter()
            .rev()
            .find(|(k, _)| k == "ENTRYPOINT")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{at}: no ENTRYPOINT"));
        assert!(
            entrypoint.contains(&format!("/usr/local/bin/{package}")),
            "{at}: ENTRYPOINT runs {package}"
        );
        assert!(
            runtime
                .iter()
                .any(|(k, v)| k == "COPY" && v.contains(&format!("/usr/local/bin/{package}"))),
            "{at}: the binary is installed where ENTRYPOINT runs it"
        );
        let cmd = runtime
            .iter()
            .rev()
            .find(|(k, _)| k == "CMD")
            .map(|(_, v)| v.as_str());
        assert!(
            entrypoint.contains("\"run\"") || cmd.is_some_and(|c| c.contains("\"run\"")),
            "{at}: the image runs the daemon (`run`)"
        );
        assert!(
            runtime.iter().any(|(k, _)| k == "VOLUME"),
            "{at}: the data directory is a VOLUME"
        );
        assert!(
            runtime.iter().any(|(k, _)| k == "EXPOSE"),
            "{at}: EXPOSE the ports"
        );
    }

    // The cloud image's own config: loads, listens where the image EXPOSEs, keeps its data in
    // the VOLUME.
    let cloud = dockerfile("cloud.Dockerfile");
    let copied_config = cloud
        .runtime()
        .iter()
        .find(|(k, v)| k == "COPY" && v.contains("/etc/flashkart/cloud.toml"))
        .map(|(_, v)| v.split_whitespace().next().unwrap_or("").to_owned())
        .expect("the cloud image carries a config file");
    let config = load_cloud_config(&root().join(&copied_config));
    let instruction = |keyword: &str| {
        cloud
            .runtime()
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        config.listen.ip().is_unspecified(),
        "{copied_config}: listen on every interface in a container"
    );
    assert!(
        instruction("EXPOSE")
            .split_whitespace()
            .any(|p| p == config.listen.port().to_string()),
        "cloud.Dockerfile does not EXPOSE {}",
        config.listen.port()
    );
    assert!(
        instruction("VOLUME").contains(&config.data_dir.display().to_string()),
        "the cloud's data_dir {} is not the image's VOLUME",
        config.data_dir.display()
    );
    assert!(
        instruction("ENV").contains("FLASHKART_CLOUD_CONFIG=/etc/flashkart/cloud.toml"),
        "the cloud image points FLASHKART_CLOUD_CONFIG at its config"
    );
}

/// The path Compose's health check of the cloud asks (`GET <path> HTTP/1.1`).
fn compose_health_path() -> String {
    let compose = &load_yaml(&root().join("deploy/docker-compose.yml"))[0];
    let test = list(&compose["services"]["cloud"]["healthcheck"]["test"])
        .iter()
        .filter_map(Yaml::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    test.split("GET ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the cloud's health check asks no path: {test}"))
}

#[test]
fn the_compose_file_builds_both_images_and_keeps_the_cloud_data_in_a_volume() {
    let path = root().join("deploy/docker-compose.yml");
    let compose = &load_yaml(&path)[0];
    let services = &compose["services"];
    for (service, dockerfile_name) in [("cloud", "cloud.Dockerfile"), ("edge", "edge.Dockerfile")] {
        let build = &services[service]["build"];
        let context = path
            .parent()
            .expect("deploy/")
            .join(text(&build["context"], "build context"));
        assert!(
            context.join("Cargo.toml").is_file() && context.join(".dockerignore").is_file(),
            "{service}: the build context is the repository root"
        );
        let file = text(&build["dockerfile"], "build dockerfile");
        assert!(context.join(file).is_file(), "{service}: {file} exists");
        assert!(
            file.ends_with(dockerfile_name),
            "{service} builds {dockerfile_name}"
        );
    }
    // The cloud's data in a named volume, at the image config's data_dir.
    let config = load_cloud_config(&root().join("deploy/docker/cloud.toml"));
    let data_dir = config.data_dir.display().to_string();
    let volumes = compose["volumes"].as_hash().expect("named volumes");
    let mount = list(&services["cloud"]["volumes"])
        .iter()
        .filter_map(Yaml::as_str)
        .find(|v| v.ends_with(&format!(":{data_dir}")))
        .unwrap_or_else(|| panic!("the cloud's {data_dir} is not a volume"));
    let volume = mount.split(':').next().unwrap_or("");
    assert!(
        volumes.contains_key(&Yaml::String(volume.to_owned())),
        "{volume} is not a named volume"
    );
    // Published ports are the ones the images listen on.
    let published = |service: &str| -> Vec<String> {
        list(&services[service]["ports"])
            .iter()
            .filter_map(Yaml::as_str)
            .filter_map(|p| p.rsplit(':').next().map(str::to_owned))
            .collect()
    };
    assert_eq!(published("cloud"), vec![config.listen.port().to_string()]);
    assert_eq!(published("edge"), vec!["8080".to_owned()]);
    // The edge reaches the cloud by its service name, at the port the cloud listens on, and
    // its token is interpolated from the shell, never written down.
    let edge_toml = text(&compose["configs"]["edge-toml"]["content"], "edge.toml");
    assert!(
        edge_toml.contains(&format!(
            "cloud_url = \"http://cloud:{}\"",
            config.listen.port()
        )),
        "{edge_toml}"
    );
    assert!(
        edge_toml.contains("token = \"${FLASHKART_STORE_TOKEN"),
        "the store token comes from the shell: {edge_toml}"
    );
    // Secrets are passed through by name only (a bare `NAME` takes the shell's value).
    for service in ["cloud", "edge"] {
        for env in list(&services[service]["environment"]) {
            let entry = text(env, "environment entry");
            if looks_secret(entry) {
                assert!(
                    !entry.contains('='),
                    "{service}: {entry} has a value in the compose file"
                );
            }
        }
    }
}

/// `deploy/docker-compose.cluster.yml`, parsed, with its path.
fn cluster_compose() -> (PathBuf, Yaml) {
    let path = root().join("deploy/docker-compose.cluster.yml");
    let compose = load_yaml(&path)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{} is empty", rel(&path)));
    (path, compose)
}

const CLUSTER_CLOUDS: [&str; 2] = ["cloud-a", "cloud-b"];

/// A service's environment, in either of Compose's forms (`- NAME=value` / `- NAME` or a map):
/// name -> value, `None` for a name passed through from the shell.
fn compose_env(service: &Yaml) -> BTreeMap<String, Option<String>> {
    let environment = &service["environment"];
    if let Some(map) = environment.as_hash() {
        return map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Yaml::Null => None,
                    Yaml::Integer(n) => Some(n.to_string()),
                    Yaml::Boolean(b) => Some(b.to_string()),
                    other => Some(text(other, "an environment value").to_owned()),
                };
                (text(k, "an environment name").to_owned(), value)
            })
            .collect();
    }
    list(environment)
        .iter()
        .map(|e| {
            let entry = text(e, "an environment entry");
            match entry.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (entry.to_owned(), None),
            }
        })
        .collect()
}

/// The `${NAME...}` interpolations of Compose in `text`, each replaced by `value(NAME)`.
fn interpolate(text: &str, value: impl Fn(&str) -> String) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .unwrap_or_else(|| panic!("an unclosed ${{ in {text}"));
        let inner = &rest[start + 2..end];
        let name: String = inner
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.push_str(&value(&name));
        names.push(name);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    (out, names)
}

/// The variable a Compose value is wholly interpolated from (`${NAME}`, `${NAME:?message}`
/// and the like), `None` for a value with anything else in it.
fn interpolated_from_shell(value: &str) -> Option<String> {
    let (rest, names) = interpolate(value, |_| String::new());
    match names.as_slice() {
        [name_] if rest.is_empty() && value.starts_with("${") && value.ends_with('}') => {
            Some(name_.clone())
        }
        _ => None,
    }
}

/// The named volume a service mounts at `target` (a bind mount or none panics).
fn named_volume_at<'a>(compose: &'a Yaml, service: &str, target: &str) -> &'a str {
    let mount = list(&compose["services"][service]["volumes"])
        .iter()
        .filter_map(Yaml::as_str)
        .find(|v| v.split(':').nth(1) == Some(target))
        .unwrap_or_else(|| panic!("{service} mounts nothing at {target}"));
    let volume = mount.split(':').next().unwrap_or("");
    assert!(
        compose["volumes"]
            .as_hash()
            .is_some_and(|v| v.contains_key(&Yaml::String(volume.to_owned()))),
        "{service}: {volume} at {target} is not a named volume of the file"
    );
    volume
}

/// The configs entry mounted at `target` in `service`: its top-level definition.
fn compose_config<'a>(compose: &'a Yaml, service: &str, target: &str) -> &'a Yaml {
    let source = list(&compose["services"][service]["configs"])
        .iter()
        .find(|c| c["target"].as_str() == Some(target))
        .map(|c| text(&c["source"], "a configs source"))
        .unwrap_or_else(|| panic!("{service} mounts no config at {target}"));
    let config = &compose["configs"][source];
    assert!(
        !config.is_badvalue(),
        "{service}: config {source} is not defined"
    );
    config
}

/// The balancer's nginx.conf (the file the Compose config names), comments stripped.
fn balancer_conf(path: &Path, compose: &Yaml) -> (PathBuf, String) {
    let config = compose_config(compose, "balancer", "/etc/nginx/nginx.conf");
    let file = path
        .parent()
        .expect("deploy/")
        .join(text(&config["file"], "the balancer's config file").trim_start_matches("./"));
    let conf = read(&file)
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    (file, conf)
}

#[test]
fn the_cluster_compose_file_runs_two_clouds_on_postgres_behind_a_balancer() {
    let (path, compose) = cluster_compose();
    let services = &compose["services"];
    let single = &load_yaml(&root().join("deploy/docker-compose.yml"))[0];
    assert_ne!(
        compose["name"].as_str(),
        single["name"].as_str(),
        "its own project name, so its volumes are not deploy/docker-compose.yml's"
    );

    // Both clouds' config, through the cloud's own loader, agrees with the image's built-in
    // one and holds no secret: the admin token, like the database URL and the Stripe keys,
    // comes from each service's environment.
    let cloud_toml = text(
        &compose_config(&compose, "cloud-a", "/etc/flashkart/cloud.toml")["content"],
        "the clouds' cloud.toml",
    );
    let (toml, names) = interpolate(cloud_toml, |_| "interpolated".to_owned());
    assert!(names.is_empty(), "nothing interpolated: {cloud_toml}");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("cloud.toml"), toml).expect("write cloud.toml");
    let config = load_cloud_config(&dir.path().join("cloud.toml"));
    let image_config = load_cloud_config(&root().join("deploy/docker/cloud.toml"));
    assert!(
        config.admin_token.is_none(),
        "the admin token comes from each service's environment"
    );
    assert!(
        config.database_url.is_none(),
        "the database URL comes from each service's environment"
    );
    assert_eq!(config.listen, image_config.listen);
    assert_eq!(config.data_dir, image_config.data_dir);
    assert_eq!(config.extension_dir, image_config.extension_dir);
    let port = config.listen.port();
    let data_dir = config.data_dir.display().to_string();

    let health = compose_health_path();
    let mut data_volumes = BTreeSet::new();
    for cloud in CLUSTER_CLOUDS {
        let service = &services[cloud];
        // The image of deploy/docker-compose.yml, built from the same Dockerfile.
        for key in ["context", "dockerfile"] {
            assert_eq!(
                service["build"][key], single["services"]["cloud"]["build"][key],
                "{cloud}: build {key}"
            );
        }
        assert_eq!(service["image"], single["services"]["cloud"]["image"]);
        assert_eq!(
            text(
                &compose_config(&compose, cloud, "/etc/flashkart/cloud.toml")["content"],
                "cloud.toml"
            ),
            cloud_toml,
            "{cloud}: both clouds run the same cloud.toml"
        );
        // Each its own data directory: its replicas, catalog copy and search index.
        let volume = named_volume_at(&compose, cloud, &data_dir);
        assert!(
            data_volumes.insert(volume.to_owned()),
            "{cloud} shares the data volume {volume}"
        );
        let env = compose_env(service);
        let url = env
            .get("FLASHKART_DATABASE_URL")
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("{cloud}: no FLASHKART_DATABASE_URL"));
        flashkart_cloud::postgres::DatabaseUrl::parse(&url)
            .unwrap_or_else(|e| panic!("{cloud}: the cloud refuses {url}: {e}"));
        let parsed = reqwest::Url::parse(&url).expect("a URL");
        assert_eq!(
            parsed.host_str(),
            Some("postgres"),
            "{cloud}: the postgres service"
        );
        assert_eq!(parsed.port().unwrap_or(5432), 5432, "{cloud}: {url}");
        assert_eq!(
            parsed.password(),
            None,
            "{cloud}: a password in the Compose file"
        );
        assert_eq!(
            env.get("FLASHKART_ADVERTISE_URL").cloned().flatten(),
            Some(format!("http://{cloud}:{port}")),
            "{cloud} advertises its own service name at the port it listens on"
        );
        // One admin token for both instances, required from the shell (Compose refuses to
        // start without it), never written down.
        let token = env
            .get("FLASHKART_ADMIN_TOKEN")
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("{cloud}: no FLASHKART_ADMIN_TOKEN"));
        assert_eq!(
            interpolated_from_shell(&token).as_deref(),
            Some("FLASHKART_ADMIN_TOKEN"),
            "{cloud}: FLASHKART_ADMIN_TOKEN is the shell's, interpolated: {token}"
        );
        assert!(
            token.starts_with("${FLASHKART_ADMIN_TOKEN:?"),
            "{cloud}: the admin token is required (`${{FLASHKART_ADMIN_TOKEN:?...}}`): {token}"
        );
        // Card payments are shared (PostgreSQL): the Stripe keys pass through from the shell,
        // by name only, as in deploy/docker-compose.yml.
        for var in [
            "FLASHKART_STRIPE_SECRET_KEY",
            "FLASHKART_STRIPE_WEBHOOK_SECRET",
        ] {
            assert_eq!(
                env.get(var),
                Some(&None),
                "{cloud}: {var} passed through from the shell, without a value"
            );
        }
        assert_eq!(
            service["depends_on"]["postgres"]["condition"].as_str(),
            Some("service_healthy"),
            "{cloud} waits for PostgreSQL"
        );
        // The health check of deploy/docker-compose.yml (its path is asked of a running cloud
        // by the Deployment's test above).
        let test = list(&service["healthcheck"]["test"])
            .iter()
            .filter_map(Yaml::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            test.contains(&format!("/dev/tcp/127.0.0.1/{port}"))
                && test.contains(&format!("GET {health} ")),
            "{cloud}: health check {test}"
        );
        assert!(
            service["ports"].is_badvalue(),
            "{cloud} is reached through the balancer"
        );
    }
    // No other service mounts a cloud's data volume.
    for (name_, service) in services.as_hash().expect("services") {
        let name_ = text(name_, "service name");
        if CLUSTER_CLOUDS.contains(&name_) {
            continue;
        }
        for mount in list(&service["volumes"]).iter().filter_map(Yaml::as_str) {
            let volume = mount.split(':').next().unwrap_or("");
            assert!(!data_volumes.contains(volume), "{name_} mounts {volume}");
        }
    }

    // PostgreSQL: the official image, its data in a named volume, no port on the host, and only
    // on internal networks (trust authentication is acceptable only there).
    let postgres = &services["postgres"];
    assert!(
        text(&postgres["image"], "postgres image").starts_with("postgres:"),
        "the official image"
    );
    named_volume_at(&compose, "postgres", "/var/lib/postgresql/data");
    assert!(
        postgres["ports"].is_badvalue(),
        "PostgreSQL publishes no port"
    );
    let networks = list(&postgres["networks"]);
    assert!(!networks.is_empty(), "postgres names its networks");
    for network in networks {
        let network = text(network, "a network");
        assert_eq!(
            compose["networks"][network]["internal"].as_bool(),
            Some(true),
            "postgres is on {network}, which is not internal"
        );
        for cloud in CLUSTER_CLOUDS {
            assert!(
                list(&services[cloud]["networks"])
                    .iter()
                    .any(|n| n.as_str() == Some(network)),
                "{cloud} does not join {network}, where PostgreSQL is"
            );
        }
    }
    assert!(
        !postgres["healthcheck"]["test"].is_badvalue(),
        "postgres has a health check (the clouds wait on it)"
    );

    // The balancer: nginx's TCP proxy over both clouds with passive failover, on loopback.
    let balancer = &services["balancer"];
    assert!(
        text(&balancer["image"], "balancer image").starts_with("nginx:"),
        "the official nginx image"
    );
    let (conf_path, conf) = balancer_conf(&path, &compose);
    assert!(
        conf.contains("stream {") && !conf.contains("http {"),
        "{}: a TCP (stream) proxy passes h2c sync through",
        rel(&conf_path)
    );
    // The `server` lines of the `upstream` block (not the `server {` block that listens).
    let upstreams: BTreeSet<String> = conf
        .lines()
        .skip_while(|l| !l.starts_with("upstream "))
        .skip(1)
        .take_while(|l| *l != "}")
        .filter_map(|l| l.strip_prefix("server "))
        .filter_map(|l| l.split([' ', ';']).next())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        upstreams,
        CLUSTER_CLOUDS
            .iter()
            .map(|c| format!("{c}:{port}"))
            .collect::<BTreeSet<_>>(),
        "{}: the upstreams are both clouds at their port",
        rel(&conf_path)
    );
    assert!(
        conf.lines().any(|l| l == "proxy_next_upstream on;"),
        "{}: passive failover",
        rel(&conf_path)
    );
    let connect_timeout = conf
        .lines()
        .find_map(|l| l.strip_prefix("proxy_connect_timeout "))
        .and_then(|t| t.strip_suffix("s;"))
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{}: proxy_connect_timeout in seconds", rel(&conf_path)));
    assert!(
        connect_timeout <= 3,
        "a dead instance must cost a connection at most a few seconds: {connect_timeout}s"
    );
    let listen = conf
        .lines()
        .find_map(|l| l.strip_prefix("listen "))
        .and_then(|l| l.strip_suffix(';'))
        .unwrap_or_else(|| panic!("{}: no listen", rel(&conf_path)));
    assert_eq!(
        list(&balancer["ports"])
            .iter()
            .filter_map(Yaml::as_str)
            .collect::<Vec<_>>(),
        vec![format!("127.0.0.1:{port}:{listen}")],
        "the balancer publishes the cloud's port on loopback"
    );
    for cloud in CLUSTER_CLOUDS {
        assert_eq!(
            balancer["depends_on"][cloud]["condition"].as_str(),
            Some("service_healthy"),
            "nginx resolves {cloud} when it starts"
        );
    }
    assert!(!balancer["healthcheck"]["test"].is_badvalue());

    // The edge syncs through the balancer, with its token from the shell.
    let edge_toml = text(
        &compose_config(&compose, "edge", "/etc/flashkart/edge.toml")["content"],
        "edge.toml",
    );
    assert!(
        edge_toml.contains(&format!("cloud_url = \"http://balancer:{port}\"")),
        "{edge_toml}"
    );
    assert!(
        edge_toml.contains("token = \"${FLASHKART_STORE_TOKEN"),
        "the store token comes from the shell: {edge_toml}"
    );
    assert_eq!(
        services["edge"]["depends_on"]["balancer"]["condition"].as_str(),
        Some("service_healthy")
    );

    assert!(
        read(&root().join("docs/deploy.md")).contains("deploy/docker-compose.cluster.yml"),
        "docs/deploy.md describes the cluster's Compose file"
    );
}

#[test]
fn the_cluster_compose_file_publishes_on_loopback_only_and_commits_no_secret() {
    let (path, compose) = cluster_compose();
    let services = compose["services"].as_hash().expect("services");
    for (name_, service) in services {
        let name_ = text(name_, "service name");
        for port in list(&service["ports"]) {
            let port = text(port, "a ports entry (the short string form)");
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name_} publishes {port} beyond loopback"
            );
        }
        for (var, value) in compose_env(service) {
            if !looks_secret(&var) {
                continue;
            }
            let Some(value) = value else {
                continue; // passed through from the shell
            };
            if var.ends_with("DATABASE_URL") {
                let url = reqwest::Url::parse(&value).expect("a database URL");
                assert_eq!(url.password(), None, "{name_}: a password in {var}");
            } else if interpolated_from_shell(&value).as_deref() != Some(var.as_str()) {
                panic!("{name_}: {var} has a value in the Compose file");
            }
        }
    }
    // A secret in an inline config is interpolated from the shell.
    for (config_name, config) in compose["configs"].as_hash().expect("configs") {
        let Some(content) = config["content"].as_str() else {
            continue;
        };
        for line in content.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if looks_secret(key.trim()) {
                assert!(
                    value.trim().starts_with("\"${"),
                    "{config_name:?}: {line} is not interpolated from the shell"
                );
            }
        }
    }
    // Nothing that looks like a credential, anywhere in the file or the balancer's config.
    let (conf_path, _) = balancer_conf(&path, &compose);
    for file in [&path, &conf_path] {
        let content = read(file);
        for needle in [
            "sk_live",
            "sk_test",
            "rk_live",
            "whsec_",
            "PASSWORD=",
            "PASSWORD:",
            "password=",
        ] {
            assert!(!content.contains(needle), "{} contains {needle}", rel(file));
        }
        for line in content.lines().filter(|l| l.contains("://")) {
            let after = line.split("://").nth(1).unwrap_or("");
            let authority = after.split(['/', ' ', '"']).next().unwrap_or("");
            assert!(
                !authority
                    .split('@')
                    .next()
                    .is_some_and(|userinfo| authority.contains('@') && userinfo.contains(':')),
                "{}: a password in {line}",
                rel(file)
            );
        }
    }
}

/// `kustomize` or, failing that, `kubectl` (which embeds it) on `PATH`.
fn kustomize_command() -> Option<Vec<String>> {
    let path = std::env::var_os("PATH")?;
    let find = |name: &str| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    if let Some(kustomize) = find("kustomize") {
        return Some(vec![kustomize.display().to_string(), "build".into()]);
    }
    find("kubectl").map(|k| vec![k.display().to_string(), "kustomize".into()])
}

#[test]
fn every_overlay_renders_with_kustomize_when_it_is_installed() {
    let Some(command) = kustomize_command() else {
        eprintln!(
            "skipped: neither kustomize nor kubectl is on PATH; the manifests were checked \
             without rendering them"
        );
        return;
    };
    let toml = read(&configmap_cloud_toml(&base()));
    let namespace = base().file["namespace"]
        .as_str()
        .expect("the base sets a namespace")
        .to_owned();
    for dir in overlays() {
        let output = Command::new(&command[0])
            .args(&command[1..])
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
        assert!(
            output.status.success(),
            "{command:?} {} failed: {}",
            rel(&dir),
            String::from_utf8_lossy(&output.stderr)
        );
        let rendered = String::from_utf8(output.stdout).expect("UTF-8 output");
        let docs = YamlLoader::load_from_str(&rendered).expect("kustomize prints YAML");
        let overlay = rel(&dir);
        let deployment = docs
            .iter()
            .find(|d| kind(d) == "Deployment" && name(d) == DEPLOYMENT)
            .unwrap_or_else(|| panic!("{overlay} renders no Deployment"));
        for doc in &docs {
            if !matches!(
                kind(doc),
                "Namespace" | "ClusterRole" | "ClusterRoleBinding"
            ) {
                assert_eq!(
                    doc["metadata"]["namespace"].as_str(),
                    Some(namespace.as_str()),
                    "{overlay}: {} {} is outside the namespace",
                    kind(doc),
                    name(doc)
                );
            }
        }
        // The generated ConfigMap (hashed name) is the one the pod mounts, with cloud.toml.
        let volume = list(&deployment["spec"]["template"]["spec"]["volumes"])
            .iter()
            .find_map(|v| v["configMap"]["name"].as_str())
            .expect("the pod mounts a ConfigMap");
        assert!(volume.starts_with(CONFIG_MAP), "{overlay}: mounts {volume}");
        let configmap = docs
            .iter()
            .find(|d| kind(d) == "ConfigMap" && name(d) == volume)
            .unwrap_or_else(|| panic!("{overlay}: the pod mounts {volume}, which is not rendered"));
        assert_eq!(
            configmap["data"][CONFIG_FILE].as_str(),
            Some(toml.as_str()),
            "{overlay}: the ConfigMap carries base/cloud.toml"
        );
        let container = cloud_container(deployment);
        assert!(
            text(&container["image"], "image").starts_with("flashkart-cloud:"),
            "{overlay}: the image is tagged"
        );
        let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
        let strategy = deployment["spec"]["strategy"]["type"].as_str();
        let hpa = docs.iter().any(|d| kind(d) == "HorizontalPodAutoscaler");
        if overlay.ends_with("single") {
            assert_eq!((replicas, strategy, hpa), (1, Some("Recreate"), false));
        }
        let pdb = docs.iter().any(|d| kind(d) == "PodDisruptionBudget");
        let claims = docs
            .iter()
            .filter(|d| kind(d) == "PersistentVolumeClaim")
            .count();
        let data = pod_volume(deployment, "data");
        if overlay.ends_with("single") {
            // One pod, its data on the base's claim.
            assert_eq!(claims, 1, "{overlay}: the data's PersistentVolumeClaim");
            assert!(!data["persistentVolumeClaim"].is_badvalue(), "{overlay}");
        }
        if overlay.ends_with("postgres") {
            assert!(replicas >= 2, "{overlay}: {replicas} replicas");
            assert_eq!((strategy, hpa, pdb), (Some("RollingUpdate"), true, true));
            assert_eq!(
                deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"].as_i64(),
                Some(0),
                "{overlay}: a rollout keeps every pod serving until its replacement is ready"
            );
            // No shared volume: nothing waits for a ReadWriteOnce claim.
            assert_eq!(claims, 0, "{overlay} renders a PersistentVolumeClaim");
            let http_port = resolve_port(container, &Yaml::String("http".into()));
            assert_runs_on_postgres(&overlay, list(&container["env"]), data, http_port);
            let kinds: BTreeSet<&str> = probes(container).iter().map(|(p, _, _)| *p).collect();
            assert!(
                kinds.contains("readinessProbe") && kinds.contains("livenessProbe"),
                "{overlay}: probes {kinds:?}"
            );
        }
        for doc in &docs {
            assert_ne!(kind(doc), "Secret", "{overlay} renders a Secret");
        }
        eprintln!(
            "{overlay}: rendered {} resources with {}",
            docs.len(),
            command.join(" ")
        );
    }
}
