//! The lake as services of their own on the test network, as production has it: an S3
//! server (moto) that holds the Parquet files and the Iceberg warehouse, and an Iceberg
//! REST catalog (the test suite's: PyIceberg's SQL catalog behind the REST protocol) whose
//! state is in the run's folder. Both listen on the bridge's address, so the nodes reach
//! them over their own links, and the lake-outage nemesis can cut them off or stop the
//! catalog while the data stays.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::lake::python_output;

const S3_PORT: u16 = 9000;
const CATALOG_PORT: u16 = 8181;
const BUCKET: &str = "arka-jepsen";
/// How long a service may take to listen once started.
const LISTEN_WAIT_MAX: Duration = Duration::from_secs(30);
/// The REST catalog script of the test suite.
const REST_CATALOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/python/rest_catalog.py"
);

pub struct RemoteLake {
    /// The bridge's address, where both services listen.
    host: String,
    dir: PathBuf,
    s3: Option<Child>,
    catalog: Option<Child>,
}

impl RemoteLake {
    /// Starts the S3 server (with the bucket made) and the catalog on `host`, keeping their
    /// logs and the catalog's database in `dir`.
    pub fn start(host: &str, dir: &Path) -> anyhow::Result<Self> {
        let mut lake = RemoteLake {
            host: host.to_string(),
            dir: dir.to_path_buf(),
            s3: None,
            catalog: None,
        };
        let mut moto = Command::new("python3");
        moto.args(["-m", "moto.server", "-H", host, "-p", &S3_PORT.to_string()]);
        let s3 = (lake.spawn_logged(&mut moto, "s3"))
            .context("start the S3 server (pip install 'moto[server]')")?;
        lake.s3 = Some(s3);
        wait_listening(lake.addr(S3_PORT)?, "the S3 server")?;
        lake.make_bucket()?;
        lake.start_catalog()?;
        Ok(lake)
    }

    /// The ports the nodes reach the object store and the catalog on.
    pub const OBJECT_STORE_PORT: u16 = S3_PORT;
    pub const CATALOG_PORT: u16 = CATALOG_PORT;

    /// The lines of a node's configuration that point it at this lake.
    pub fn node_config(&self) -> String {
        format!(
            "object-store-url = \"s3://{BUCKET}/cluster\"\nobject-store-options = {{ aws_endpoint = \"{}\", aws_region = \"us-east-1\", aws_access_key_id = \"test\", aws_secret_access_key = \"test\", aws_allow_http = \"true\" }}\ncatalog-url = \"{}\"\n",
            self.s3_endpoint(),
            self.catalog_uri(),
        )
    }

    /// The arguments of `iceberg_read.py` that read this lake: catalog, warehouse, then the
    /// reader's S3 properties.
    pub fn reader_args(&self) -> Vec<String> {
        let mut args = vec![self.catalog_uri(), warehouse()];
        args.extend(self.s3_properties());
        args
    }

    /// Starts the catalog (again), on its database of before.
    pub fn start_catalog(&mut self) -> anyhow::Result<()> {
        let mut catalog = Command::new("python3");
        catalog
            .arg(REST_CATALOG)
            .arg(format!("{}:{CATALOG_PORT}", self.host))
            .arg(self.dir.join("rest-catalog.db"))
            .arg(warehouse())
            .args(self.s3_properties());
        let child = (self.spawn_logged(&mut catalog, "rest-catalog"))
            .context("start the REST catalog (pip install pyiceberg)")?;
        self.catalog = Some(child);
        wait_listening(self.addr(CATALOG_PORT)?, "the REST catalog")
    }

    /// Stops the catalog at once (kill -9), as a crashed catalog service.
    pub fn stop_catalog(&mut self) {
        stop(&mut self.catalog);
    }

    fn s3_endpoint(&self) -> String {
        format!("http://{}:{S3_PORT}", self.host)
    }

    fn catalog_uri(&self) -> String {
        format!("http://{}:{CATALOG_PORT}", self.host)
    }

    /// PyIceberg's properties for the bucket.
    fn s3_properties(&self) -> Vec<String> {
        vec![
            format!("s3.endpoint={}", self.s3_endpoint()),
            "s3.access-key-id=test".into(),
            "s3.secret-access-key=test".into(),
            "s3.region=us-east-1".into(),
        ]
    }

    fn make_bucket(&self) -> anyhow::Result<()> {
        let script = format!(
            "import boto3\nboto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='{BUCKET}')\n",
            self.s3_endpoint()
        );
        let mut python = Command::new("python3");
        python.args(["-c", &script]);
        python_output(&mut python, &format!("make the bucket {BUCKET}"))?;
        Ok(())
    }

    fn addr(&self, port: u16) -> anyhow::Result<SocketAddr> {
        let addr = format!("{}:{port}", self.host);
        addr.parse().with_context(|| format!("address {addr}"))
    }

    /// Starts `command` with its output appended to `NAME.log` in the run's folder.
    fn spawn_logged(&self, command: &mut Command, name: &str) -> anyhow::Result<Child> {
        let path = self.dir.join(format!("{name}.log"));
        let log = (OpenOptions::new().create(true).append(true).open(&path))
            .with_context(|| format!("open {}", path.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        Ok(command.spawn()?)
    }
}

impl Drop for RemoteLake {
    fn drop(&mut self) {
        stop(&mut self.catalog);
        stop(&mut self.s3);
    }
}

fn warehouse() -> String {
    format!("s3://{BUCKET}/cluster/warehouse")
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn wait_listening(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + LISTEN_WAIT_MAX;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} within {LISTEN_WAIT_MAX:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
