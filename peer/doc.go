// Package peer lets several lockerd servers share one limit by exchanging
// cumulative counts over ZeroMQ PUB/SUB; see docs/federation.md.
package peer
