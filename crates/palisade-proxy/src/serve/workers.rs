//! Worker threads for the proxy port: one current-thread runtime each, all accepting
//! from one listening socket, and the hand-off that keeps their connection counts level.
//!
//! A new connection wakes every worker and one of them accepts it. A worker that serves
//! more connections than another hands what it accepted to the least loaded one (as
//! HAProxy's threads do), so that long-lived keep-alive connections spread evenly over
//! the workers instead of wherever the accept race put them. A connection then stays on
//! its worker to the end: its requests, their upstream connections and its response
//! bodies all run on that worker's event loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A connection on its way to another worker.
pub(crate) type Handed = (std::net::TcpStream, SocketAddr);

/// Connections that may wait in one worker's queue; past that, the accepting worker
/// serves the connection itself.
const QUEUE: usize = 1024;

/// What the workers share: how many connections each serves, and a queue into each.
pub(crate) struct Workers {
    load: Box<[AtomicUsize]>,
    inboxes: Box<[mpsc::Sender<Handed>]>,
}

impl Workers {
    /// `count` workers, and the receiving end of each one's queue.
    pub(crate) fn new(count: usize) -> (Arc<Self>, Vec<mpsc::Receiver<Handed>>) {
        let (inboxes, receivers): (Vec<_>, Vec<_>) =
            (0..count.max(1)).map(|_| mpsc::channel(QUEUE)).unzip();
        let workers = Arc::new(Self {
            load: (0..count.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            inboxes: inboxes.into_boxed_slice(),
        });
        (workers, receivers)
    }

    fn least_loaded(&self) -> usize {
        self.load
            .iter()
            .enumerate()
            .min_by_key(|(_, load)| load.load(Ordering::Relaxed))
            .map_or(0, |(index, _)| index)
    }

    fn load_of(&self, index: usize) -> &AtomicUsize {
        // Indexes come from `Placement`s, each made for an index below the count.
        &self.load[index % self.load.len()]
    }
}

/// One worker's side of the hand-off.
pub(crate) struct Placement {
    index: usize,
    workers: Arc<Workers>,
}

/// A connection counted against its worker until it is dropped.
pub(crate) struct Load {
    index: usize,
    workers: Arc<Workers>,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.workers
            .load_of(self.index)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Placement {
    /// Worker `index` of `workers`.
    pub(crate) fn new(index: usize, workers: Arc<Workers>) -> Self {
        Self { index, workers }
    }

    /// The worker's index.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Serves a connection this worker accepted here, or hands it to a worker with fewer
    /// connections (`None`: handed over, or lost in the hand-over and closed).
    pub(crate) fn place(
        &self,
        stream: TcpStream,
        client: SocketAddr,
    ) -> Option<(TcpStream, SocketAddr, Load)> {
        let workers = &self.workers;
        let target = workers.least_loaded();
        let ours = workers.load_of(self.index).load(Ordering::Relaxed);
        let mut stream = stream;
        if target != self.index && workers.load_of(target).load(Ordering::Relaxed) < ours {
            workers.load_of(target).fetch_add(1, Ordering::Relaxed);
            let unsent = match stream.into_std() {
                Ok(std) => {
                    match workers.inboxes[target % workers.inboxes.len()].try_send((std, client)) {
                        Ok(()) => return None,
                        Err(
                            mpsc::error::TrySendError::Full((std, _))
                            | mpsc::error::TrySendError::Closed((std, _)),
                        ) => std,
                    }
                }
                Err(error) => {
                    workers.load_of(target).fetch_sub(1, Ordering::Relaxed);
                    tracing::debug!(%error, "cannot hand a connection over");
                    return None;
                }
            };
            // That worker has stopped, or its queue is full: serve it here after all.
            workers.load_of(target).fetch_sub(1, Ordering::Relaxed);
            stream = match TcpStream::from_std(unsent) {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%error, "cannot take a connection back");
                    return None;
                }
            };
        }
        workers.load_of(self.index).fetch_add(1, Ordering::Relaxed);
        Some((stream, client, self.load()))
    }

    /// A connection another worker handed here (already counted against this worker).
    pub(crate) fn receive(&self, (std, client): Handed) -> Option<(TcpStream, SocketAddr, Load)> {
        let load = self.load();
        match TcpStream::from_std(std) {
            Ok(stream) => Some((stream, client, load)),
            Err(error) => {
                tracing::debug!(%error, "cannot take a handed connection");
                None
            }
        }
    }

    fn load(&self) -> Load {
        Load {
            index: self.index,
            workers: self.workers.clone(),
        }
    }
}

/// The next connection handed to this worker; never, without a queue.
pub(crate) async fn handed(inbox: &mut Option<mpsc::Receiver<Handed>>) -> Handed {
    match inbox {
        Some(inbox) => match inbox.recv().await {
            Some(handed) => handed,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(listener: &tokio::net::TcpListener) -> (TcpStream, SocketAddr) {
        let address = listener.local_addr().expect("address");
        let _client = std::net::TcpStream::connect(address).expect("connect");
        listener.accept().await.expect("accept")
    }

    #[tokio::test]
    async fn a_busier_worker_hands_new_connections_to_an_idle_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (workers, mut inboxes) = Workers::new(2);
        let first = Placement::new(0, workers.clone());
        let second = Placement::new(1, workers.clone());
        let (stream, client) = pair(&listener).await;
        let kept = first
            .place(stream, client)
            .expect("level: served where accepted");
        let (stream, client) = pair(&listener).await;
        assert!(
            first.place(stream, client).is_none(),
            "handed to the idle worker"
        );
        let handed = inboxes[1].try_recv().expect("in the second worker's queue");
        let received = second.receive(handed).expect("registered there");
        assert_eq!(workers.load_of(0).load(Ordering::Relaxed), 1);
        assert_eq!(workers.load_of(1).load(Ordering::Relaxed), 1);
        drop((kept, received));
        assert_eq!(workers.load_of(0).load(Ordering::Relaxed), 0);
        assert_eq!(workers.load_of(1).load(Ordering::Relaxed), 0);
        inboxes.clear();
        let (stream, client) = pair(&listener).await;
        let _one = first.place(stream, client).expect("served here");
        let (stream, client) = pair(&listener).await;
        assert!(
            first.place(stream, client).is_some(),
            "a stopped worker's connection is served where it was accepted"
        );
    }
}
