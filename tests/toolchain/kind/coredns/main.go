// Command coredns is the cluster DNS kubeadm deploys in the kind node image: CoreDNS at the
// version kubeadm v1.35 pins (constants.CoreDNSVersion), with the plugins its Corefile uses
// (cmd/kubeadm/app/phases/addons/dns), in CoreDNS's own execution order. The kind node's
// forward upstream is unreachable by design (devkit.kindnode): names outside the cluster
// do not resolve there.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func init() {
	dnsserver.Directives = []string{
		"reload", "ready", "health", "prometheus", "errors", "loadbalance", "cache",
		"kubernetes", "loop", "forward",
	}
}

func main() {
	coremain.Run()
}
