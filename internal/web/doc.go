// Package web serves floodgate's own web pages from the same binary as the
// API: the list of open campaigns at /, the donation page of a campaign at
// /c/{id}, their static files under /assets/, and a plain 404 page for
// anything else.
//
// The pages are plain HTML, CSS and JavaScript embedded with embed.FS. They
// talk only to floodgate's public JSON API (/v1/...) from the browser, so
// the server side holds no state and needs no store: New takes only the
// payments mode. They load no file from another host: no CDN, no web
// fonts, no framework. The Content-Security-Policy sent with every page
// enforces that, except that in stripe mode it also admits
// https://js.stripe.com for the card form that a later version will load.
//
// Templates are html/template, and the only server data a page carries (the
// payments mode and the campaign id, which must already match the API's
// [a-z0-9-]{1,64}) travels in data-* attributes, never in inline script:
// the policy forbids inline script. The scripts insert everything they
// fetch with textContent, never innerHTML.
//
// Static files are served under a content-hashed name
// (/assets/donate.1a2b3c4d5e6f.js) with a year-long immutable cache, and
// under their plain name with an ETag and revalidation.
package web
