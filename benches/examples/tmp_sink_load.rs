// TEMPORARY load check; deleted after measurement.
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use volley_bench::{Sink, SinkConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = std::env::var("THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap();
    rt.block_on(async move {
        match args[1].as_str() {
            "serve" => {
                let sink = Sink::start(SinkConfig { listen: args[2].parse().unwrap(), ..SinkConfig::default() }).await.unwrap();
                let mut last = 0;
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let s = sink.stats();
                    if s.messages != last { eprintln!("{} msg/s total={} conns={} flushes={}", s.messages - last, s.messages, s.connections, s.reply_flushes); }
                    last = s.messages;
                }
            }
            _ => {
                let addr: std::net::SocketAddr = args[2].parse().unwrap();
                let conns: usize = args[3].parse().unwrap();
                let per: usize = args[4].parse().unwrap();
                let mut body = b"From: a@b.test\r\nTo: c@d.test\r\nSubject: load\r\n\r\n".to_vec();
                while body.len() < 4096 { body.extend_from_slice(b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"); }
                body.extend_from_slice(b".\r\n");
                let body = std::sync::Arc::new(body);
                let start = Instant::now();
                let mut tasks = Vec::new();
                for c in 0..conns {
                    let body = body.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut s = TcpStream::connect(addr).await.unwrap();
                        s.set_nodelay(true).unwrap();
                        let mut buf = vec![0u8; 65536];
                        let mut pending = Vec::new();
                        async fn wait(s: &mut TcpStream, buf: &mut [u8], pending: &mut Vec<u8>, n: usize) {
                            loop {
                                let count = pending.windows(2).filter(|w| w == b"\r\n").count();
                                if count >= n { pending.clear(); return; }
                                let r = s.read(buf).await.unwrap();
                                assert!(r > 0);
                                pending.extend_from_slice(&buf[..r]);
                            }
                        }
                        wait(&mut s, &mut buf, &mut pending, 1).await;
                        s.write_all(b"HELO load.test\r\n").await.unwrap();
                        wait(&mut s, &mut buf, &mut pending, 1).await;
                        for m in 0..per {
                            let cmd = format!("MAIL FROM:<s@load.test>\r\nRCPT TO:<u{c}-{m}@x.test>\r\nDATA\r\n");
                            s.write_all(cmd.as_bytes()).await.unwrap();
                            wait(&mut s, &mut buf, &mut pending, 3).await;
                            s.write_all(&body).await.unwrap();
                            wait(&mut s, &mut buf, &mut pending, 1).await;
                        }
                        s.write_all(b"QUIT\r\n").await.unwrap();
                    }));
                }
                for t in tasks { t.await.unwrap(); }
                let el = start.elapsed();
                let total = conns * per;
                eprintln!("client: {total} msgs in {el:?} = {:.0} msg/s", total as f64 / el.as_secs_f64());
            }
        }
    });
}
