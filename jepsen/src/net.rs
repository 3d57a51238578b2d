//! The test network: each node is a host of its own, a network namespace with one veth
//! link to a bridge the harness makes, so that faults between nodes are real packet loss
//! between hosts. The harness itself (the clients) sits on the bridge's address. Everything
//! is made with iproute2 and removed when the network is dropped; leftovers of a run that
//! was killed are removed before the next one starts.

use std::process::Command;

use anyhow::{bail, Context};

const BRIDGE: &str = "arkajbr0";
/// The first three octets of the test subnet; the bridge is `.1`, node `i` is `.(10 + i)`.
const SUBNET: &str = "10.77.0";
/// Namespaces and veth names: `arkaj-n<i>` and `arkaj<i>` / `arkaj<i>p`.
const NS_PREFIX: &str = "arkaj-n";
const VETH_PREFIX: &str = "arkaj";
/// The longest a degraded link queues a packet before it drops it.
const QUEUE_DELAY_MAX: &str = "300ms";
/// Hosts a network has at most (addresses `.11` to `.(10 + HOSTS_MAX)`).
pub const HOSTS_MAX: usize = 9;

/// The network; dropping it removes it.
pub struct Network(());

impl Network {
    /// Makes the bridge and `hosts` namespaces linked to it.
    pub fn create(hosts: usize) -> anyhow::Result<Self> {
        if hosts == 0 || hosts > HOSTS_MAX {
            bail!("a test network has 1 to {HOSTS_MAX} hosts, not {hosts}");
        }
        remove_leftovers();
        let net = Network(());
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{SUBNET}.1/24"), "dev", BRIDGE])?;
        ip(&["link", "set", BRIDGE, "up"])?;
        // A host whose FORWARD policy drops (Docker's does) would drop bridged traffic
        // between the namespaces when bridge netfilter is on.
        run("iptables", &forward_rule("-I"))?;
        for i in 1..=hosts {
            net.add_host(i)?;
        }
        Ok(net)
    }

    fn add_host(&self, i: usize) -> anyhow::Result<()> {
        let ns = namespace(i);
        let (outer, inner) = veths(i);
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ])?;
        ip(&["link", "set", &inner, "netns", &ns])?;
        ip(&["link", "set", &outer, "master", BRIDGE, "up"])?;
        let addr = format!("{}/24", self.addr(i));
        on_host(i, "ip", &["addr", "add", &addr, "dev", &inner])?;
        on_host(i, "ip", &["link", "set", &inner, "up"])?;
        on_host(i, "ip", &["link", "set", "lo", "up"])
    }

    /// Host `i`'s address (1-based).
    pub fn addr(&self, i: usize) -> String {
        format!("{SUBNET}.{}", 10 + i)
    }

    /// The bridge's address: where the harness, and services beside the cluster, listen.
    pub fn bridge_addr(&self) -> String {
        format!("{SUBNET}.1")
    }

    /// Drops every packet host `i` sends to the bridge's `port` and every one it gets from
    /// there (a service beside the cluster cut off); [`Network::heal`] undoes it.
    pub fn cut_service(&self, i: usize, port: u16) -> anyhow::Result<()> {
        let (addr, port) = (self.bridge_addr(), port.to_string());
        let out = [
            "-A", "OUTPUT", "-p", "tcp", "-d", &addr, "--dport", &port, "-j", "DROP",
        ];
        on_host(i, "iptables", &out)?;
        let back = [
            "-A", "INPUT", "-p", "tcp", "-s", &addr, "--sport", &port, "-j", "DROP",
        ];
        on_host(i, "iptables", &back)
    }

    /// Drops every packet with data that host `i` gets from the bridge's `port`: its requests
    /// reach the service and are carried out, but no answer comes back (connections are set
    /// up and acknowledged, as the packets without data still pass);
    /// [`Network::heal`] undoes it.
    pub fn lose_service_answers(&self, i: usize, port: u16) -> anyhow::Result<()> {
        let (addr, port) = (self.bridge_addr(), port.to_string());
        let answers = ["-A", "INPUT", "-p", "tcp", "-s", &addr, "--sport", &port];
        let with_data = ["-m", "length", "--length", "100:65535", "-j", "DROP"];
        on_host(i, "iptables", &[&answers[..], &with_data[..]].concat())
    }

    /// Aborts host `i`'s connections to the bridge's `port` (`ss -K`): its clients see them
    /// fail at once, whatever they were waiting for.
    pub fn abort_service_connections(&self, i: usize, port: u16) -> anyhow::Result<()> {
        let (addr, port) = (self.bridge_addr(), port.to_string());
        on_host(i, "ss", &["-K", "dst", &addr, "dport", "=", &port])
    }

    /// Drops every packet between host `i` and each of `others` (both ways), in host `i`'s
    /// own firewall; the harness's own address still reaches it.
    pub fn cut(&self, i: usize, others: &[usize]) -> anyhow::Result<()> {
        for other in others {
            let addr = self.addr(*other);
            on_host(i, "iptables", &["-A", "INPUT", "-s", &addr, "-j", "DROP"])?;
            on_host(i, "iptables", &["-A", "OUTPUT", "-d", &addr, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Removes every cut of host `i`.
    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        on_host(i, "iptables", &["-F", "INPUT"])?;
        on_host(i, "iptables", &["-F", "OUTPUT"])
    }

    /// Makes host `i`'s link lossy and slow, both ways: its firewall drops each packet with
    /// `loss_percent` chance, and a token bucket on each end of its link holds traffic to
    /// `rate_kbit`, queueing packets for up to [`QUEUE_DELAY_MAX`] before it drops them.
    /// (`tc netem` would add delay and loss directly, but not every kernel has it.)
    pub fn degrade(&self, i: usize, loss_percent: u32, rate_kbit: u32) -> anyhow::Result<()> {
        let chance = format!("{:.2}", f64::from(loss_percent) / 100.0);
        for chain in ["INPUT", "OUTPUT"] {
            let random = ["-A", chain, "-m", "statistic", "--mode", "random"];
            let drop = ["--probability", &chance, "-j", "DROP"];
            on_host(i, "iptables", &[&random[..], &drop[..]].concat())?;
        }
        let bucket = |dev: &str| -> Vec<String> {
            let rate = format!("{rate_kbit}kbit");
            [
                "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst", "32kb",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(["latency".into(), QUEUE_DELAY_MAX.into()])
            .collect()
        };
        let (outer, inner) = veths(i);
        run("tc", &bucket(&outer))?;
        on_host(i, "tc", &bucket(&inner))
    }

    /// Undoes [`Network::degrade`] (and every cut) of host `i`.
    pub fn restore(&self, i: usize) -> anyhow::Result<()> {
        let (outer, inner) = veths(i);
        run("tc", &["qdisc", "del", "dev", &outer, "root"])?;
        on_host(i, "tc", &["qdisc", "del", "dev", &inner, "root"])?;
        self.heal(i)
    }

    /// A command that runs `program` on host `i`.
    pub fn command_on(&self, i: usize, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &namespace(i)]).arg(program);
        command
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        remove_leftovers();
    }
}

fn namespace(i: usize) -> String {
    format!("{NS_PREFIX}{i}")
}

/// Host `i`'s link: the end on the bridge, and the end in its namespace.
fn veths(i: usize) -> (String, String) {
    (format!("{VETH_PREFIX}{i}"), format!("{VETH_PREFIX}{i}p"))
}

fn forward_rule(op: &str) -> Vec<String> {
    [op, "FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"]
        .map(String::from)
        .to_vec()
}

/// Removes every namespace, link and rule a network makes; what is not there is skipped.
fn remove_leftovers() {
    for i in 1..=HOSTS_MAX {
        let _ = quiet("ip", &["netns", "del", &namespace(i)]);
        let _ = quiet("ip", &["link", "del", &format!("{VETH_PREFIX}{i}")]);
    }
    let _ = quiet("ip", &["link", "del", BRIDGE]);
    while quiet(
        "iptables",
        &forward_rule("-D")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ) {}
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

/// Runs `program` with `args` on host `i` (in its namespace).
fn on_host<S: AsRef<std::ffi::OsStr>>(i: usize, program: &str, args: &[S]) -> anyhow::Result<()> {
    let mut all: Vec<std::ffi::OsString> = vec!["netns".into(), "exec".into()];
    all.extend([namespace(i).into(), program.into()]);
    all.extend(args.iter().map(|a| a.as_ref().to_os_string()));
    run("ip", &all)
}

fn run<S: AsRef<std::ffi::OsStr>>(program: &str, args: &[S]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        let words: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        bail!(
            "{program} {}: {}",
            words.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs a command for its success only.
fn quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}
