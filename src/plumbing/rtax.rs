//! A route's RTA_METRICS (`ip route ... mtu 1400 advmss 1360`): what a route taken from a
//! physical port carries besides its destination, kept by RTAX_* number so that it comes back
//! as it was. 0: not set. The congestion-control name (RTAX_CC_ALGO, a string) is not kept.

use netlink_packet_route::route::RouteMetric;

/// By RTAX_* (1 lock … 17 fastopen_no_cookie); index 0 and 16 (cc_algo) unused.
pub(crate) type Metrics = [u32; 18];

/// The numbered values of `m`.
pub(crate) fn read(m: &[RouteMetric]) -> Metrics {
    let mut out = [0; 18];
    for x in m {
        let (i, v) = match x {
            RouteMetric::Lock(v) => (1, v),
            RouteMetric::Mtu(v) => (2, v),
            RouteMetric::Window(v) => (3, v),
            RouteMetric::Rtt(v) => (4, v),
            RouteMetric::RttVar(v) => (5, v),
            RouteMetric::SsThresh(v) => (6, v),
            RouteMetric::Cwnd(v) => (7, v),
            RouteMetric::Advmss(v) => (8, v),
            RouteMetric::Reordering(v) => (9, v),
            RouteMetric::Hoplimit(v) => (10, v),
            RouteMetric::InitCwnd(v) => (11, v),
            RouteMetric::Features(v) => (12, v),
            RouteMetric::RtoMin(v) => (13, v),
            RouteMetric::InitRwnd(v) => (14, v),
            RouteMetric::QuickAck(v) => (15, v),
            RouteMetric::FastopenNoCookie(v) => (17, v),
            _ => continue,
        };
        out[i] = *v;
    }
    out
}

/// The attributes that set `m` (none for an empty one).
pub(crate) fn write(m: &Metrics) -> Vec<RouteMetric> {
    let make: [fn(u32) -> RouteMetric; 18] = [
        RouteMetric::Lock, // index 0: unused
        RouteMetric::Lock,
        RouteMetric::Mtu,
        RouteMetric::Window,
        RouteMetric::Rtt,
        RouteMetric::RttVar,
        RouteMetric::SsThresh,
        RouteMetric::Cwnd,
        RouteMetric::Advmss,
        RouteMetric::Reordering,
        RouteMetric::Hoplimit,
        RouteMetric::InitCwnd,
        RouteMetric::Features,
        RouteMetric::RtoMin,
        RouteMetric::InitRwnd,
        RouteMetric::QuickAck,
        RouteMetric::Lock, // 16: cc_algo, a string: not kept
        RouteMetric::FastopenNoCookie,
    ];
    (1..18)
        .filter(|&i| i != 16 && m[i] != 0)
        .map(|i| make[i](m[i]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_read_back_as_written() {
        let mut m = [0; 18];
        (m[2], m[8], m[1]) = (1400, 1300, 4);
        let w = write(&m);
        assert_eq!(w.len(), 3);
        assert_eq!(read(&w), m);
    }
}
