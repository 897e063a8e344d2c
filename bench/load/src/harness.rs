//! One run: start everything, measure the phases in order, stop everything, report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::cli::HarnessArgs;
use crate::client::{RequestTemplate, Target, TargetKind, wait_for_ok};
use crate::probe::{self, CpuUsage, Probes, Role};
use crate::process::memory;
use crate::report::{self, MemoryReport, PhaseLoad, Report, Settings};
use crate::stack::{Database, StackPlan};
use crate::{concurrent, machine, nginx, open_loop, propagation, saturation, stack, upstream};

/// A phase starts once the machine is less busy than this (or after [`SETTLE_WITHIN`]).
const QUIET: f64 = 0.25;
const SETTLE_WITHIN: Duration = Duration::from_secs(60);

fn load(phase: &'static str, settled: Duration, cpu: &CpuUsage) -> PhaseLoad {
    PhaseLoad {
        phase,
        settled_after_s: settled.as_secs_f64(),
        machine_busy_share: cpu.busy_share(),
        other_processes_share: cpu.foreign_share(),
    }
}

/// Keep-alive connections per target in the fixed-rate phases (an open loop needs a few spare).
const FIXED_RATE_CONNECTIONS: usize = 4;

pub fn run_blocking(args: &HarnessArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot build the load generator's runtime")?;
    let report = runtime.block_on(run_interruptible(args))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!(
            "{}",
            report::markdown(&report).map_err(|_| anyhow!("cannot render the report"))?
        );
    }
    Ok(())
}

/// Runs the harness; on SIGINT/SIGTERM the run is dropped, which stops every child process.
/// The database is dropped either way.
async fn run_interruptible(args: &HarnessArgs) -> Result<Report> {
    let bin_dir = bin_dir(args)?;
    stack::binary(&bin_dir, "tollgate-control-plane")?;
    stack::binary(&bin_dir, "tollgate-data-plane")?;
    let database = Database::create(&args.database_url).await?;
    eprintln!("created database {}", database.name);
    let outcome = tokio::select! {
        r = run(args, &bin_dir, &database.url) => r,
        signal = interrupted() => Err(anyhow!("interrupted ({signal}); every child process was stopped")),
    };
    let name = database.name.clone();
    match database.drop_database().await {
        Ok(()) => eprintln!("dropped database {name}"),
        Err(err) => eprintln!("warning: {err:#}"),
    }
    outcome
}

async fn interrupted() -> &'static str {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn bin_dir(args: &HarnessArgs) -> Result<PathBuf> {
    if let Some(dir) = &args.bin_dir {
        return Ok(dir.clone());
    }
    let exe = std::env::current_exe().context("cannot find the harness executable")?;
    let dir = exe
        .parent()
        .map(PathBuf::from)
        .context("the harness executable has no directory")?;
    if !dir.ends_with("release") {
        eprintln!(
            "warning: {} is not a release directory; run the harness with `cargo run --release -p tollgate-load`",
            dir.display()
        );
    }
    Ok(dir)
}

async fn run(args: &HarnessArgs, bin_dir: &std::path::Path, database_url: &str) -> Result<Report> {
    let machine = machine::describe();
    let work = tempfile::Builder::new()
        .prefix("tollgate-load-")
        .tempdir()
        .context("cannot create a work directory")?;
    let result = run_in(args, bin_dir, database_url, work.path(), machine).await;
    if result.is_err() {
        let kept = work.keep();
        eprintln!("logs of the child processes kept in {}", kept.display());
    }
    result
}

async fn run_in(
    args: &HarnessArgs,
    bin_dir: &std::path::Path,
    database_url: &str,
    work: &std::path::Path,
    machine: machine::Machine,
) -> Result<Report> {
    let mut notes = Vec::new();
    eprintln!("starting the fake upstream");
    let threads = usize::try_from(args.upstream_threads).unwrap_or(2);
    let upstream = upstream::spawn_upstream_process(work, args.stream_gap_ms, threads).await?;

    let nginx = if args.skip_nginx {
        notes.push(String::from(
            "nginx column skipped (--skip-nginx): no ratios against nginx",
        ));
        None
    } else if let Some(binary) = nginx::find() {
        eprintln!("starting nginx");
        Some(nginx::start(&binary, work, upstream.addr).await?)
    } else {
        notes.push(String::from(
            "nginx is not installed (e.g. `apt-get install -y nginx`): no ratios against nginx",
        ));
        None
    };

    eprintln!("starting the control plane and the data plane, seeding policy");
    let mut stack = stack::start(&StackPlan {
        bin_dir,
        database_url,
        upstream_url: &format!("http://{}", upstream.addr),
        work_dir: work,
        spare_keys: args.revocations,
        data_plane_log: args.data_plane_log.as_deref(),
    })
    .await?;
    let dp_pid = stack.data_plane.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = memory(dp_pid).unwrap_or_default();

    let mut targets = vec![Target {
        kind: TargetKind::Direct,
        addr: upstream.addr,
    }];
    if let Some(n) = &nginx {
        targets.push(Target {
            kind: TargetKind::Nginx,
            addr: n.addr,
        });
    }
    targets.push(Target {
        kind: TargetKind::DataPlane,
        addr: stack.data_plane_addr,
    });
    let api_key = stack.seeded.api_key.clone();
    let json = RequestTemplate::new(&api_key, false, None)?;
    for t in &targets {
        wait_for_ok(t.addr, &json, Duration::from_secs(10))
            .await
            .with_context(|| format!("{} does not answer the bench request", t.kind.label()))?;
    }

    let mut probes = Probes::default();
    probes.add(Role::LoadGenerator, vec![std::process::id()]);
    probes.add(Role::Upstream, vec![upstream.guard.pid()]);
    if let Some(n) = &nginx {
        probes.add(Role::Nginx, n.pids.clone());
    }
    probes.add(Role::DataPlane, vec![dp_pid]);
    probes.add(Role::ControlPlane, vec![stack.control_plane.pid()]);
    let duration = Duration::from_secs(args.duration_secs);

    let mut phase_load = Vec::new();
    eprintln!("phase 1/5: saturation");
    let settled = probe::settle(QUIET, SETTLE_WITHIN).await;
    let sat = saturation::run(&saturation::Plan {
        targets: &targets,
        template: json.clone(),
        connections: usize::try_from(args.connections).unwrap_or(64),
        duration,
        probes: &probes,
    })
    .await?;
    let mut sat_cpu = CpuUsage::default();
    for r in &sat {
        sat_cpu.machine_busy_us += r.cpu.machine_busy_us;
        sat_cpu.machine_capacity_us += r.cpu.machine_capacity_us;
        for (role, us) in &r.cpu.role_us {
            *sat_cpu.role_us.entry(*role).or_default() += us;
        }
    }
    phase_load.push(load("saturation", settled, &sat_cpu));

    eprintln!("phase 2/5: light fixed rate");
    let settled = probe::settle(QUIET, SETTLE_WITHIN).await;
    let before = probes.sample();
    let fixed = open_loop::run(&open_loop::Plan {
        targets: &targets,
        template: json.clone(),
        rate_per_target: args.rate,
        duration,
        connections_per_target: FIXED_RATE_CONNECTIONS,
    })
    .await?;
    let mut cpu = CpuUsage::default();
    cpu.add_window(&before, &probes.sample());
    phase_load.push(load("light fixed rate", settled, &cpu));

    eprintln!("phase 3/5: streaming");
    let settled = probe::settle(QUIET, SETTLE_WITHIN).await;
    let before = probes.sample();
    let streaming = open_loop::run(&open_loop::Plan {
        targets: &targets,
        template: RequestTemplate::new(&api_key, true, None)?,
        rate_per_target: args.stream_rate,
        duration,
        connections_per_target: FIXED_RATE_CONNECTIONS * 2,
    })
    .await?;
    let mut cpu = CpuUsage::default();
    cpu.add_window(&before, &probes.sample());
    phase_load.push(load("streaming", settled, &cpu));
    stack.data_plane.ensure_running()?;
    let after_load = memory(dp_pid).unwrap_or_default();

    let concurrent = if args.concurrent_streams > 0 {
        eprintln!(
            "phase 4/5: {} concurrent streams through the data plane",
            args.concurrent_streams
        );
        let dp = targets
            .iter()
            .copied()
            .find(|t| t.kind == TargetKind::DataPlane);
        let Some(dp) = dp else {
            bail!("no data plane target")
        };
        Some(concurrent::run(dp, &api_key, args.concurrent_streams, dp_pid).await?)
    } else {
        None
    };

    eprintln!("phase 5/5: admin change → enforced");
    let propagation = propagation::run(
        &mut stack.admin,
        stack.data_plane_addr,
        &api_key,
        args.policy_changes,
        &stack.seeded.spare_keys,
    )
    .await?;
    stack.data_plane.ensure_running()?;
    stack.control_plane.ensure_running()?;
    if let Some(filter) = &args.data_plane_log {
        notes.push(format!("data plane log filter: {filter}"));
    }
    if let Ok(meta) = std::fs::metadata(stack.data_plane.log_path()) {
        notes.push(format!(
            "the data plane wrote {} bytes of log during the run",
            meta.len()
        ));
    }

    let mut report = Report {
        machine,
        settings: Settings {
            duration_secs: args.duration_secs,
            connections: args.connections,
            rate: args.rate,
            stream_rate: args.stream_rate,
            stream_gap_ms: args.stream_gap_ms,
            concurrent_streams: args.concurrent_streams,
            nginx: nginx
                .as_ref()
                .map(|n| format!("{} (worker_processes 1)", n.version)),
        },
        notes,
        saturation: report::saturation_rows(&sat),
        fixed_rate: report::latency_rows(&fixed),
        streaming: report::streaming_rows(&streaming),
        phase_load,
        memory: MemoryReport {
            idle,
            after_load,
            concurrent,
        },
        propagation: Some(propagation),
        checks: Vec::new(),
    };
    report.checks = report::checks(&report);
    Ok(report)
}
