//! `hostlet pull`: pull an image into the store, with or without a running agent.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::image::mirrors::RegistriesConf;
use crate::image::{ImageStore, PullPolicy, StoreOptions, DEFAULT_MAX_LAYER_SIZE};

/// The files that say which images may run and where they come from: shared by the agent
/// and the image verbs.
#[derive(Debug, Clone, clap::Args)]
pub struct TrustArgs {
    /// containers-policy.json(5) images must satisfy (sigstoreSigned, reject,
    /// insecureAcceptAnything); default /etc/containers/policy.json when it exists, else
    /// every image is accepted
    #[arg(long, value_name = "FILE")]
    pub signature_policy: Option<PathBuf>,
    /// containers-registries.conf(5) (version 2): mirrors tried before a registry, blocked
    /// registries; default /etc/containers/registries.conf when it exists
    #[arg(long, value_name = "FILE")]
    pub registries_conf: Option<PathBuf>,
}

impl TrustArgs {
    pub fn policy(&self) -> anyhow::Result<Arc<crate::image::trust::Policy>> {
        Ok(Arc::new(crate::image::trust::load(
            self.signature_policy.as_deref(),
        )?))
    }

    pub fn registries(&self) -> anyhow::Result<RegistriesConf> {
        Ok(RegistriesConf::load(self.registries_conf.as_deref())?)
    }
}

/// Where the store is and how registries are reached: shared by the image verbs.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Where hostlet keeps images, bundles and container state
    #[arg(long, value_name = "DIR", default_value = "/var/lib/hostlet")]
    pub root_dir: PathBuf,
    /// A registry (HOST:PORT) reached over plain HTTP; repeatable
    #[arg(long, value_name = "HOST:PORT")]
    pub insecure_registry: Vec<String>,
    /// PEM file of CA certificates trusted for registries, besides the system roots
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
    /// Refuse a layer whose unpacked size exceeds this (bytes; K, M, G, Ki, Mi, Gi suffixes)
    #[arg(long, value_name = "SIZE", default_value_t = DEFAULT_MAX_LAYER_SIZE, value_parser = parse_size)]
    pub max_layer_size: u64,
    #[command(flatten)]
    pub trust: TrustArgs,
}

impl StoreArgs {
    pub fn open(&self) -> anyhow::Result<ImageStore> {
        let images = self.root_dir.join("images");
        ImageStore::with_options(
            &images,
            StoreOptions {
                insecure: self.insecure_registry.clone(),
                registry_ca: self.registry_ca.clone(),
                max_layer_size: self.max_layer_size,
                credentials: None,
                providers: None,
                policy: self.trust.policy()?,
                registries: self.trust.registries()?,
            },
        )
        .with_context(|| format!("opening the image store in {}", images.display()))
    }
}

/// `1024`, `512M`, `2Gi`, `1G` … as bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit {
        "" => 1,
        "K" | "k" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?} (use K, M, G, T, Ki, Mi, Gi, Ti)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

/// The agent's image flags (`hostlet run`), besides --root-dir and --insecure-registry.
#[derive(Debug, Clone, clap::Args)]
pub struct RunImageArgs {
    /// PEM file of CA certificates trusted for registries, besides the system roots
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
    /// Refuse a layer whose unpacked size exceeds this (bytes; K, M, G, Ki, Mi, Gi suffixes)
    #[arg(long, value_name = "SIZE", default_value_t = DEFAULT_MAX_LAYER_SIZE, value_parser = parse_size)]
    pub max_layer_size: u64,
    /// Disk usage (percent of the root dir's filesystem) above which unused images are removed
    #[arg(long, value_name = "PERCENT", default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_high_threshold: u8,
    /// Disk usage image garbage collection brings the filesystem back down to
    #[arg(long, value_name = "PERCENT", default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_threshold: u8,
    /// Images used more recently than this are never collected (tests shorten it)
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = duration, hide = true)]
    pub image_gc_min_age: Duration,
    /// How often disk usage is checked for image garbage collection
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration, hide = true)]
    pub image_gc_period: Duration,
    /// How often <root-dir>/images/preload/ is scanned for new archives
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration, hide = true)]
    pub preload_period: Duration,
    /// A kubelet CredentialProviderConfig (kubelet.config.k8s.io/v1): plugins that hand out
    /// registry credentials
    #[arg(
        long,
        value_name = "FILE",
        requires = "image_credential_provider_bin_dir"
    )]
    pub image_credential_provider_config: Option<PathBuf>,
    /// Where the credential provider plugins' binaries are
    #[arg(
        long,
        value_name = "DIR",
        requires = "image_credential_provider_config"
    )]
    pub image_credential_provider_bin_dir: Option<PathBuf>,
    /// How long a credential provider plugin may run before it is killed
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = duration)]
    pub image_credential_provider_timeout: Duration,
    #[command(flatten)]
    pub trust: TrustArgs,
}

fn duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s).map_err(|e| e.to_string())
}

impl RunImageArgs {
    /// The agent's image store.
    pub fn open(
        &self,
        images: &std::path::Path,
        insecure: Vec<String>,
    ) -> anyhow::Result<ImageStore> {
        anyhow::ensure!(
            self.image_gc_low_threshold <= self.image_gc_high_threshold,
            "--image-gc-low-threshold ({}) must not exceed --image-gc-high-threshold ({})",
            self.image_gc_low_threshold,
            self.image_gc_high_threshold
        );
        ImageStore::with_options(
            images,
            StoreOptions {
                insecure,
                registry_ca: self.registry_ca.clone(),
                max_layer_size: self.max_layer_size,
                credentials: None,
                providers: self.credential_providers()?,
                policy: self.trust.policy()?,
                registries: self.trust.registries()?,
            },
        )
        .context("opening the image store")
    }

    fn credential_providers(&self) -> anyhow::Result<Option<Arc<crate::image::Providers>>> {
        let (Some(config), Some(bin_dir)) = (
            &self.image_credential_provider_config,
            &self.image_credential_provider_bin_dir,
        ) else {
            return Ok(None);
        };
        let providers =
            crate::image::Providers::load(config, bin_dir, self.image_credential_provider_timeout)
                .context("--image-credential-provider-config")?;
        Ok(Some(Arc::new(providers)))
    }

    /// Starts the preload importer and the periodic image GC on the agent's store.
    pub fn spawn_tasks(&self, deps: &Arc<crate::worker::Deps>, tasks: &crate::tasks::Tasks) {
        let d = deps.clone();
        let period = self.preload_period;
        tasks.spawn("image preload", async move {
            d.images.run_preload(period).await
        });
        let policy = crate::image::GcPolicy {
            high_percent: self.image_gc_high_threshold,
            low_percent: self.image_gc_low_threshold,
            min_age: self.image_gc_min_age,
        };
        let (d, period) = (deps.clone(), self.image_gc_period);
        tasks.spawn("image gc", async move {
            loop {
                tokio::time::sleep(period).await;
                let d2 = d.clone();
                match tokio::task::spawn_blocking(move || d2.images.gc(&policy)).await {
                    Ok(Ok(r)) if !r.removed.is_empty() => tracing::info!(
                        removed = r.removed.len(),
                        usage_before = format!("{:.1}%", r.usage_before),
                        usage_after = format!("{:.1}%", r.usage_after),
                        "image garbage collection"
                    ),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "image garbage collection failed"),
                    Err(e) => tracing::warn!(error = %e, "image garbage collection panicked"),
                }
            }
        });
    }
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Image reference (busybox, registry:5000/app:1.2, app@sha256:…)
    pub reference: String,
}

pub fn main(args: PullArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let store = args.store.open()?;
        let ticker = std::io::stderr()
            .is_terminal()
            .then(|| tokio::spawn(show_progress(store.progress())));
        let result = store.ensure(&args.reference, PullPolicy::Always).await;
        if let Some(t) = ticker {
            t.abort();
            eprint!("\r\x1b[K");
        }
        let image = result.map_err(|e| anyhow::anyhow!("{}: {e}", e.reason()))?;
        println!("{} {}", image.reference, image.digest);
        let info = store.list()?.into_iter().find(|i| i.digest == image.digest);
        if let Some(by) = info.as_ref().and_then(|i| i.served_by.clone()) {
            println!("served by: {by}");
        }
        if let Some(v) = info.and_then(|i| i.verified) {
            println!("signature policy: {v}");
        }
        Ok(())
    })
}

async fn show_progress(p: Arc<crate::image::Progress>) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mib = |v: u64| v as f64 / (1024.0 * 1024.0);
        eprint!(
            "\r\x1b[Kblobs {}/{}  {:.1}/{:.1} MiB",
            p.blobs_done.load(Ordering::Relaxed),
            p.blobs_total.load(Ordering::Relaxed),
            mib(p.bytes_done.load(Ordering::Relaxed)),
            mib(p.bytes_total.load(Ordering::Relaxed)),
        );
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("1024"), Ok(1024));
        assert_eq!(super::parse_size("2Gi"), Ok(2 << 30));
        assert_eq!(super::parse_size("5M"), Ok(5_000_000));
        assert!(super::parse_size("5X").is_err());
        assert!(super::parse_size("").is_err());
    }
}
