//go:build tools

// Package tools pins containerd at the version kind v0.30's own node base ships (v2.1.4),
// for the kind node image: kind's `build node-image` runs containerd 2's ctr (`ctr info`,
// `ctr images import --label`), which Debian bookworm's containerd 1.6 lacks.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
