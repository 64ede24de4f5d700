// The client-side egress (issue #5).
