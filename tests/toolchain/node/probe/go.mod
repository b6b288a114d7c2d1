// jm-probe: the static HTTP server and client in the node tests' image (see main.go).
module jewelry-monitoring/toolchain/node/probe

go 1.25.0
