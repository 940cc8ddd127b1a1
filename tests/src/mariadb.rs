//! A throwaway MariaDB server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{
    HarnessError, find_binary, free_port, port_open, random_token, stop_child, tail, wait_until,
};

const INSTALL_HINT: &str = "apt-get install -y mariadb-server mariadb-client";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const PORT_ATTEMPTS: usize = 4;

/// Settings of a harness server beyond the defaults.
#[derive(Debug, Clone)]
pub struct MariaDbOptions {
    /// `max_allowed_packet` of the server, in bytes.
    pub max_allowed_packet: u64,
    /// `innodb_buffer_pool_size`, in bytes.
    pub buffer_pool_bytes: u64,
    /// More `--option=value` arguments for `mariadbd`.
    pub extra_args: Vec<String>,
}

impl Default for MariaDbOptions {
    fn default() -> Self {
        Self {
            max_allowed_packet: 64 << 20,
            buffer_pool_bytes: 128 << 20,
            extra_args: Vec::new(),
        }
    }
}

/// A running MariaDB server on 127.0.0.1 with its own datadir; stopped and
/// deleted when dropped.
#[derive(Debug)]
pub struct MariaDb {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    root_password: String,
    options: MariaDbOptions,
}

impl MariaDb {
    /// Starts a server with default options.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(MariaDbOptions::default())
    }

    /// Initialises a datadir, starts `mariadbd` on a free port and sets the
    /// root password for TCP logins.
    pub fn start_with(options: MariaDbOptions) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("keeper-mariadb-")
            .tempdir()
            .map_err(HarnessError::io("creating the MariaDB temp dir"))?;
        install_datadir(dir.path())?;
        let root_password = random_token(24, b"abcdefghijklmnopqrstuvwxyz0123456789");
        let mut server = MariaDb {
            child: None,
            dir,
            port: 0,
            root_password,
            options,
        };
        server.launch_on_free_port()?;
        server.set_root_password()?;
        Ok(server)
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn root_user(&self) -> &str {
        "root"
    }

    pub fn root_password(&self) -> &str {
        &self.root_password
    }

    /// The server's Unix socket (inside the temp dir).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    /// The server's datadir (inside the temp dir).
    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Connection options for root over TCP.
    pub fn opts(&self) -> mysql_async::Opts {
        self.opts_for(self.root_user(), self.root_password(), None)
    }

    /// Connection options for a user, optionally with a default database.
    pub fn opts_for(&self, user: &str, password: &str, db: Option<&str>) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host().to_owned())
            .tcp_port(self.port)
            .user(Some(user.to_owned()))
            .pass(Some(password.to_owned()))
            .db_name(db.map(str::to_owned))
            .prefer_socket(false)
            .into()
    }

    /// A root connection (async).
    pub async fn connect(&self) -> Result<mysql_async::Conn, HarnessError> {
        mysql_async::Conn::new(self.opts())
            .await
            .map_err(|e| client_error(format!("connecting as root: {e}")))
    }

    /// Runs a SQL script with the `mariadb` command-line client, as a user
    /// would (so `DELIMITER` and client commands work).
    pub fn run_sql_file(&self, path: &Path, database: Option<&str>) -> Result<(), HarnessError> {
        let input = std::fs::File::open(path)
            .map_err(HarnessError::io(format!("opening {}", path.display())))?;
        self.run_client(Stdio::from(input), database)
    }

    /// Runs SQL text with the `mariadb` command-line client.
    pub fn run_sql(&self, sql: &str, database: Option<&str>) -> Result<(), HarnessError> {
        let file = self.dir.path().join(format!(
            "script-{}.sql",
            random_token(8, b"abcdef0123456789")
        ));
        std::fs::write(&file, sql).map_err(HarnessError::io("writing a SQL script"))?;
        let result = self.run_sql_file(&file, database);
        let _ = std::fs::remove_file(&file);
        result
    }

    fn run_client(&self, stdin: Stdio, database: Option<&str>) -> Result<(), HarnessError> {
        let client = find_binary("mariadb", INSTALL_HINT)?;
        let mut cmd = Command::new(client);
        cmd.arg("--no-defaults")
            .arg("--protocol=TCP")
            .arg(format!("--host={}", self.host()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={}", self.root_user()))
            .arg(format!(
                "--max-allowed-packet={}",
                self.options.max_allowed_packet
            ))
            // The password goes through the environment, never the arguments.
            .env("MYSQL_PWD", &self.root_password)
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(db) = database {
            cmd.arg(db);
        }
        let out = cmd
            .output()
            .map_err(HarnessError::io("running the mariadb client"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(client_error(format!(
                "the mariadb client failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.child = None;
    }

    /// Starts the server again on the same port and datadir (after [`kill`] or
    /// [`stop`]).
    ///
    /// [`kill`]: MariaDb::kill
    /// [`stop`]: MariaDb::stop
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        self.launch(self.port)
    }

    /// Stops the server cleanly.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(20));
        }
    }

    fn launch_on_free_port(&mut self) -> Result<(), HarnessError> {
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match self.launch(port) {
                Ok(()) => return Ok(()),
                Err(e) if tail(&self.log_path(), 20).contains("Bind on TCP/IP port") => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(HarnessError::StartFailed {
            service: "MariaDB",
            reason: "no free port".into(),
            log_tail: String::new(),
        }))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    fn launch(&mut self, port: u16) -> Result<(), HarnessError> {
        let server = find_binary("mariadbd", INSTALL_HINT)?;
        let dir = self.dir.path();
        let mut cmd = Command::new(server);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", self.log_path().display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            // Root can only start the server when it says so.
            .arg("--user=root")
            .arg(format!("--log-bin={}", dir.join("data/binlog").display()))
            .arg("--server-id=1")
            .arg("--skip-name-resolve")
            .arg(format!(
                "--max-allowed-packet={}",
                self.options.max_allowed_packet
            ))
            .arg(format!(
                "--innodb-buffer-pool-size={}",
                self.options.buffer_pool_bytes
            ))
            // Throwaway servers: durability is not what tests measure.
            .arg("--innodb-flush-log-at-trx-commit=2")
            .arg("--sync-binlog=0")
            .args(&self.options.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(HarnessError::io("starting mariadbd"))?;
        let socket = self.socket();
        let ready = wait_until(&mut child, START_TIMEOUT, || {
            socket.exists() && port_open(port)
        });
        if let Err(reason) = ready {
            stop_child(&mut child, Duration::from_secs(5));
            return Err(HarnessError::StartFailed {
                service: "MariaDB",
                reason,
                log_tail: tail(&self.log_path(), 20),
            });
        }
        self.child = Some(child);
        self.port = port;
        Ok(())
    }

    /// `mariadb-install-db` leaves root accounts without a password; give
    /// every root account the generated one so tests log in like users do.
    fn set_root_password(&self) -> Result<(), HarnessError> {
        let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host().to_owned())
            .tcp_port(self.port)
            .user(Some("root"))
            .prefer_socket(false)
            .into();
        let password = self.root_password.clone();
        block_on("MariaDB", async move {
            use mysql_async::prelude::Queryable;
            let mut conn = mysql_async::Conn::new(opts).await?;
            // ALTER USER takes no placeholders; the generated password is
            // [a-z0-9] only, so it needs no escaping inside the quotes.
            for host in ["localhost", "127.0.0.1", "::1"] {
                conn.query_drop(format!(
                    "ALTER USER 'root'@'{host}' IDENTIFIED BY '{password}'"
                ))
                .await?;
            }
            conn.query_drop("FLUSH PRIVILEGES").await?;
            conn.disconnect().await
        })?
        .map_err(|e| client_error(format!("setting the root password: {e}")))
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // SIGKILL: the datadir is deleted right after, nothing to flush.
        self.kill();
    }
}

fn install_datadir(dir: &Path) -> Result<(), HarnessError> {
    let install = find_binary("mariadb-install-db", INSTALL_HINT)?;
    let log = dir.join("install.log");
    let log_file = std::fs::File::create(&log).map_err(HarnessError::io("creating install.log"))?;
    let log_err = log_file
        .try_clone()
        .map_err(HarnessError::io("opening install.log"))?;
    // A private tmpdir: servers sharing /tmp collide on temporary table names
    // ("Unknown table 'mysql.tmp_proxies_priv'") when several bootstrap at once.
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(HarnessError::io("creating the server's tmpdir"))?;
    let status = Command::new(install)
        .env("TMPDIR", &tmp)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg("--user=root")
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .status()
        .map_err(HarnessError::io("running mariadb-install-db"))?;
    if status.success() {
        Ok(())
    } else {
        Err(HarnessError::StartFailed {
            service: "MariaDB",
            reason: format!("mariadb-install-db exited with {status}"),
            log_tail: std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .take(15)
                .collect::<Vec<_>>()
                .join("\n"),
        })
    }
}

fn client_error(message: String) -> HarnessError {
    HarnessError::Client {
        service: "MariaDB",
        message,
    }
}

/// Runs a future to completion on a small private runtime, so the harness can
/// be used from both sync and async tests (a nested `block_on` on the caller's
/// runtime would panic, hence the separate thread).
pub(crate) fn block_on<F, T>(service: &'static str, future: F) -> Result<T, HarnessError>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let failed = |message: &str| HarnessError::Client {
        service,
        message: message.to_owned(),
    };
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(future))
    })
    .join()
    .map_err(|_| failed("the harness's helper thread panicked"))?
    .map_err(|_| failed("cannot build the harness's helper runtime"))
}
