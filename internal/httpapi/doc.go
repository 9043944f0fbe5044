// Package httpapi serves floodgate's public contract over HTTP: routes,
// handlers that return errors, one table from error code to HTTP status,
// problem+json bodies, and the live totals stream (SSE).
//
// Handlers never write a raw cause to a client: an error that is not a
// *floodgate.Error is logged and answered "Internal error.".
package httpapi
