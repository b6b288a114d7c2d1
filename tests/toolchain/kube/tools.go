//go:build tools

// Package tools pins the Kubernetes commands built by tests/toolchain/setup: the control
// plane (kube-apiserver, kube-controller-manager, kube-scheduler), the node (kubelet,
// kube-proxy) and what the kind node image adds to them (kubeadm, kubectl), all from one
// k8s.io/kubernetes version.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
