"""A real Kubernetes node beside the local control plane, as local processes.

containerd (its own config, root, state and socket under the node's working directory) runs
the pods with runc; kubelet registers the node; kube-proxy programs Services in iptables
mode; kube-scheduler binds pods; CoreDNS (built with no forward plugin) answers
``cluster.local`` on the node IP. Pods get addresses from a CNI bridge whose gateway is the
node IP.

Nothing here may send a packet off the machine (see the project's network rules):

- pods have no default route (only the Service CIDR, through the node IP);
- on the host, the pod CIDR and the Service CIDR are routed to the bridge, never to the
  default route;
- an nftables table drops every forwarded packet except bridge-to-bridge, so a pod that
  dials an outside address, or a Service whose endpoint is outside, dies on this host;
- containerd sends every registry host to a dead loopback port, so a mistaken pull fails
  at once; every image is loaded from a tarball (``load_image``);
- NodePorts open on the node IP only, and CoreDNS has no upstream.

Pods reach the API server (which listens on loopback) through the ``kubernetes`` Service:
a relay on the node IP (devkit.relay) is its endpoint.

One node runs per host (the bridge, iptables chains and the ``kubepods`` cgroups are
host-wide), claimed in ``HOST_CLAIM``. ``stop()`` removes every process, container, mount,
network namespace, veth, rule, route, cgroup and file it made, and restores the kernel
settings kubelet and the bridge plugin change. Only the images stay: containerd's root (its
content store, unpacked snapshots and image metadata; no container) moves to the cache at
stop and back at the next start (``image_store``), so a node imports an archive only when
its image content changed (importing the demo's 13 images takes about 50 s).

Modules, one concern each: ``node`` (the Node and its lifecycle), ``claim`` (one node per
host), ``host`` (what a node changes on the host and puts back), ``network`` (bridge, routes,
the forward filter), ``containerd`` (runtime, registry hosts, image store), ``archives``
(image tarballs), ``components`` (kubelet, kube-proxy, kube-scheduler, CoreDNS, the relay).
"""

from devkit.node.archives import PROBE_IMAGE, probe_image_archive, write_image_archive
from devkit.node.claim import NodeUnavailable, why_no_node
from devkit.node.components import COMPONENT_PORTS, NODE_NAME
from devkit.node.containerd import DEAD_REGISTRY
from devkit.node.host import HOST_CLAIM, host_footprint, host_leftovers
from devkit.node.network import BRIDGE, NFT_TABLE, POD_CIDR
from devkit.node.node import Node

__all__ = [
    "BRIDGE",
    "COMPONENT_PORTS",
    "DEAD_REGISTRY",
    "HOST_CLAIM",
    "NFT_TABLE",
    "NODE_NAME",
    "POD_CIDR",
    "PROBE_IMAGE",
    "Node",
    "NodeUnavailable",
    "host_footprint",
    "host_leftovers",
    "probe_image_archive",
    "why_no_node",
    "write_image_archive",
]
