//! Which interfaces can take XDP frames now: those redirected into them (XDP_REDIRECT) and those sent back out
//! of them (XDP_TX).
//!
//! The kernel tells per device in its `xdp-features` (the `netdev` generic netlink family, Linux 6.3 and newer):
//! `ndo-xmit` says the driver accepts frames from XDP. Without it a redirect fails and the frame is lost (only a
//! tracepoint sees it). A veth is the case that matters: it has `ndo-xmit` only while its PEER has an XDP program
//! or GRO on (Linux 6.4 and newer keep the flag in step with the peer), and on a container host the peer is in a
//! container that has neither, so the relay must keep the flows through such an interface in user space. The
//! flag changes at run time (a peer gets or loses its program); the `mgmt` multicast group announces every change,
//! which [`FeatureWatch`] turns into a wake-up of the relay thread.
//!
//! neli speaks generic netlink (family and group resolution, attributes, acks): this module only knows the
//! `netdev` family's numbers, from `include/uapi/linux/netdev.h`.

use std::sync::Arc;

use neli::{
    consts::{nl::NlmF, socket::NlFamily},
    genl::{AttrTypeBuilder, Genlmsghdr, GenlmsghdrBuilder, NlattrBuilder, NoUserHeader},
    nl::NlPayload,
    router::synchronous::{NlRouter, NlRouterReceiverHandle},
    types::{Buffer, GenlBuffer},
    utils::Groups,
};
use tokio::sync::Notify;

const FAMILY: &str = "netdev";
const MCAST_GROUP: &str = "mgmt";
const VERSION: u8 = 1;
/// `NETDEV_CMD_DEV_GET`.
const CMD_DEV_GET: u8 = 1;
/// `NETDEV_A_DEV_IFINDEX` (u32).
const A_DEV_IFINDEX: u16 = 1;
/// `NETDEV_A_DEV_XDP_FEATURES` (u64, `enum netdev_xdp_act`).
const A_DEV_XDP_FEATURES: u16 = 3;
/// `NETDEV_XDP_ACT_NDO_XMIT`: the driver implements `ndo_xdp_xmit` and can take frames now.
const XDP_ACT_NDO_XMIT: u64 = 1 << 2;

type Msg = Genlmsghdr<u8, u16, NoUserHeader>;

/// Why the kernel could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FeaturesError(String);

fn err(what: &str) -> impl FnOnce(String) -> FeaturesError + '_ {
    move |e| FeaturesError(format!("{what}: {e}"))
}

/// A generic netlink connection to the kernel's `netdev` family.
pub struct NetdevFeatures {
    router: NlRouter,
    family: u16,
}

impl std::fmt::Debug for NetdevFeatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetdevFeatures").field("family", &self.family).finish_non_exhaustive()
    }
}

impl NetdevFeatures {
    /// Connects and resolves the family; also subscribes to its change notifications, which the returned
    /// [`FeatureWatch`] turns into wake-ups. Fails on kernels before 6.3 (no `netdev` family).
    pub fn open() -> Result<(Self, FeatureWatch), FeaturesError> {
        let (router, multicast) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
            .map_err(|e| err("open a generic netlink socket")(e.to_string()))?;
        let family = router.resolve_genl_family(FAMILY).map_err(|e| {
            err("the kernel has no netdev netlink family (Linux 6.3 or newer reports XDP features)")(e.to_string())
        })?;
        let group = router
            .resolve_nl_mcast_group(FAMILY, MCAST_GROUP)
            .map_err(|e| err("resolve the netdev mgmt group")(e.to_string()))?;
        router
            .add_mcast_membership(Groups::new_groups(&[group]))
            .map_err(|e| err("join the netdev mgmt group")(e.to_string()))?;
        Ok((Self { router, family }, FeatureWatch::spawn(multicast)))
    }

    /// Whether the interface `ifindex` takes XDP frames now (`ndo-xmit` in its xdp-features).
    pub fn xmit_ready(&self, ifindex: u32) -> Result<bool, FeaturesError> {
        let attr = NlattrBuilder::default()
            .nla_type(
                AttrTypeBuilder::default().nla_type(A_DEV_IFINDEX).build().map_err(|e| err("attr")(e.to_string()))?,
            )
            .nla_payload(ifindex)
            .build()
            .map_err(|e| err("attr")(e.to_string()))?;
        let msg: Msg = GenlmsghdrBuilder::default()
            .cmd(CMD_DEV_GET)
            .version(VERSION)
            .attrs(std::iter::once(attr).collect::<GenlBuffer<u16, Buffer>>())
            .build()
            .map_err(|e| err("message")(e.to_string()))?;
        let replies: NlRouterReceiverHandle<u16, Msg> = self
            .router
            .send(self.family, NlmF::ACK, NlPayload::Payload(msg))
            .map_err(|e| err("send netdev dev-get")(e.to_string()))?;
        let mut features = None;
        for reply in replies {
            let reply = reply.map_err(|e| err(&format!("netdev dev-get of ifindex {ifindex}"))(e.to_string()))?;
            if let Some(p) = reply.get_payload() {
                if let Ok(f) = p.attrs().get_attr_handle().get_attr_payload_as::<u64>(A_DEV_XDP_FEATURES) {
                    features = Some(f);
                }
            }
        }
        let features = features.ok_or_else(|| FeaturesError(format!("no xdp-features for ifindex {ifindex}")))?;
        Ok(features & XDP_ACT_NDO_XMIT != 0)
    }
}

/// Wakes whoever waits on [`FeatureWatch::changed`] when a device is added, removed or changes (its XDP
/// features among others), from a thread that reads the notifications; the thread ends with the
/// [`NetdevFeatures`] connection.
#[derive(Debug, Clone)]
pub struct FeatureWatch {
    changed: Arc<Notify>,
}

impl FeatureWatch {
    fn spawn(multicast: NlRouterReceiverHandle<u16, Msg>) -> Self {
        let changed = Arc::new(Notify::new());
        let notify = changed.clone();
        let spawned = std::thread::Builder::new().name("xdp-features".into()).spawn(move || {
            for _ in multicast {
                notify.notify_one();
            }
        });
        if let Err(e) = spawned {
            // The periodic check still sees every change, only later.
            tracing::warn!(error = %e, "xdp: no thread for device change notifications");
        }
        Self { changed }
    }

    /// Resolves at the next change notification (at once if one came since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}
