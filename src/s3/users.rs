//! Who a request acts for, and the storage it reaches. With `--auth-key` (or anonymous access)
//! that is one [`Vfs`] for everyone. With `--auth-proxy`, each access key ID is a user: the
//! program gives its secret and the backend it maps to, and the user gets a `Vfs` of its own
//! over that backend, kept per (access key ID, backend described) so that a user whose answer
//! changes (a new root, rotated upstream credentials) gets a fresh one at once.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::auth::proxy::{Answer, AuthProxy, Refusal};
use super::auth::{unknown_key, Keys, Secrets};
use crate::ops::{Code, S3Error};
use crate::vfs::Vfs;

/// The secrets that check a request, and the storage it reaches once they have.
pub trait Tenant: Secrets {
    /// The storage of the access key whose secret checked the request.
    fn vfs(&self) -> Result<Arc<Vfs>, S3Error>;
}

/// `--auth-key` or anonymous access: one storage for every key.
pub struct Shared<'a> {
    pub keys: &'a Keys,
    pub vfs: &'a Arc<Vfs>,
}

impl Secrets for Shared<'_> {
    fn anonymous(&self) -> bool {
        self.keys.anonymous()
    }

    fn secret(&self, access_key: &str) -> Result<Cow<'_, str>, S3Error> {
        self.keys.secret(access_key)
    }
}

impl Tenant for Shared<'_> {
    fn vfs(&self) -> Result<Arc<Vfs>, S3Error> {
        Ok(self.vfs.clone())
    }
}

/// Makes the storage of a user from the program's answer: `(access key ID, answer)`.
pub type MakeVfs = Box<dyn Fn(&str, &Answer) -> Result<Arc<Vfs>, String> + Send + Sync>;

/// The `--auth-proxy` users: the program, and each user's storage once made.
pub struct Users {
    proxy: AuthProxy,
    make: MakeVfs,
    made: Mutex<HashMap<(String, String), Arc<Vfs>>>,
    /// Held while a storage is made (and a user's old one closed): one at a time, while
    /// requests for storages already made go on.
    making: Mutex<()>,
}

impl Users {
    pub fn new(proxy: AuthProxy, make: MakeVfs) -> Users {
        Users {
            proxy,
            make,
            made: Mutex::default(),
            making: Mutex::default(),
        }
    }

    /// Every user's storage made so far.
    pub fn all(&self) -> Vec<Arc<Vfs>> {
        self.made_lock().values().cloned().collect()
    }

    /// The secrets for one request from `ip` (`None` on a unix socket).
    pub fn asking(&self, ip: Option<String>) -> Asking<'_> {
        Asking {
            users: self,
            ip,
            fresh: Cell::new(false),
            asked: Cell::new(false),
            answer: RefCell::new(None),
        }
    }

    /// The storage `answer` describes, for `user`: made on first use, one at a time, so
    /// two first requests never make two. The user's storage that an earlier answer
    /// described, and that no request is using, is closed first: a user has one storage
    /// at a time, and a cache of theirs is reopened by the new one.
    fn vfs(&self, user: &str, answer: &Answer) -> Result<Arc<Vfs>, S3Error> {
        let key = (user.to_string(), answer.backend_id().to_string());
        if let Some(vfs) = self.made_lock().get(&key) {
            return Ok(vfs.clone());
        }
        let _making = self.making.lock().unwrap_or_else(|p| p.into_inner());
        let retired: Vec<Arc<Vfs>> = {
            let mut made = self.made_lock();
            if let Some(vfs) = made.get(&key) {
                return Ok(vfs.clone());
            }
            let idle: Vec<_> = made
                .iter()
                .filter(|(k, vfs)| k.0 == key.0 && Arc::strong_count(vfs) == 1)
                .map(|(k, _)| k.clone())
                .collect();
            idle.iter().filter_map(|k| made.remove(k)).collect()
        };
        for old in retired {
            log::info!("--auth-proxy: access key {user:?} has a new backend; closing the old one");
            old.shutdown();
        }
        let vfs = (self.make)(user, answer).map_err(|why| {
            log::error!("--auth-proxy: the backend of access key {user:?}: {why}");
            unavailable()
        })?;
        self.made_lock().insert(key, vfs.clone());
        Ok(vfs)
    }

    fn made_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Vfs>>> {
        self.made.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn unavailable() -> S3Error {
    S3Error::new(
        Code::ServiceUnavailable,
        "The server cannot check this access key or reach its storage now; the server log \
         says why. Please try again.",
    )
}

/// The secrets of one request under `--auth-proxy`: the program's answer for the access key
/// the request names, remembered for [`Tenant::vfs`].
pub struct Asking<'a> {
    users: &'a Users,
    ip: Option<String>,
    /// Ask the program, not the memory (the signature did not match a remembered secret).
    fresh: Cell<bool>,
    /// The answer came from the program for this request.
    asked: Cell<bool>,
    answer: RefCell<Option<(String, Answer)>>,
}

impl Secrets for Asking<'_> {
    fn anonymous(&self) -> bool {
        false
    }

    fn secret(&self, access_key: &str) -> Result<Cow<'_, str>, S3Error> {
        let looked = self
            .users
            .proxy
            .look(access_key, self.ip.as_deref(), self.fresh.get());
        self.asked.set(looked.asked);
        match looked.answer {
            Ok(answer) => {
                let secret = answer.secret.clone();
                *self.answer.borrow_mut() = Some((access_key.to_string(), answer));
                Ok(Cow::Owned(secret))
            }
            Err(Refusal::NoSecret) => {
                log::info!("--auth-proxy gave access key {access_key:?} no secret: refused");
                Err(unknown_key())
            }
            Err(Refusal::Failed(_)) => Err(unavailable()),
        }
    }

    fn ask_afresh(&self) -> bool {
        let again = self.answer.borrow().is_some() && !self.asked.get() && !self.fresh.get();
        self.fresh.set(self.fresh.get() || again);
        again
    }
}

impl Tenant for Asking<'_> {
    fn vfs(&self) -> Result<Arc<Vfs>, S3Error> {
        match &*self.answer.borrow() {
            Some((user, answer)) => self.users.vfs(user, answer),
            None => Err(S3Error::new(
                Code::AccessDenied,
                "Access Denied: this server requires signed requests.",
            )),
        }
    }
}
