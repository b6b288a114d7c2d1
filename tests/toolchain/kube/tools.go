//go:build tools

// Package tools pins the Kubernetes commands built by tests/toolchain/setup: the control
// plane (kube-apiserver, kube-controller-manager, kube-scheduler) and the node (kubelet,
// kube-proxy), all from one k8s.io/kubernetes version.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
