//go:build tools

// Package tools pins the oldest Kubernetes the chart claims (Chart.yaml kubeVersion): the
// control plane the tests run a second time against, kube-apiserver and
// kube-controller-manager from one k8s.io/kubernetes version, built by tests/toolchain/setup
// the same way as tests/toolchain/kube.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
