//go:build tools

// Package tools pins etcd at the version kubeadm v1.35 deploys (constants.DefaultEtcdVersion
// 3.6.6-0), for the kind node image; tests/toolchain/setup builds its server command.
package tools

import _ "go.etcd.io/etcd/server/v3"
