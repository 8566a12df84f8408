/** The frame of every page: header with navigation and the signed-in user, then the content. */
import { html, type SafeHtml } from "../html.ts";
import type { Session } from "../sessions.ts";

export type Nav = "overview" | "runs" | "events" | "vm" | "none";

export function page(o: { title: string; nav: Nav; session?: Session | undefined; body: SafeHtml; flash?: string | undefined; live?: boolean }): string {
  const link = (href: string, name: Nav, text: string) => html`<a href="${href}" class="${o.nav === name ? "current" : ""}">${text}</a>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${o.title} · Ferry</title>
<link rel="stylesheet" href="/assets/console.css">
${o.live ? html`<script src="/assets/live.js" defer></script>` : ""}
</head>
<body>
<header class="top">
  <a class="brand" href="/">Ferry</a>
  ${o.session
    ? html`<nav>${link("/", "overview", "Overview")}${link("/runs", "runs", "Runs")}${link("/events", "events", "Events")}</nav>
  <form class="who" method="post" action="/logout"><input type="hidden" name="_csrf" value="${o.session.csrf}"><span>${o.session.user} <em class="role">${o.session.role}</em></span> <button type="submit" class="link">Log out</button></form>`
    : ""}
</header>
<main>
${o.flash ? html`<p class="flash">${o.flash}</p>` : ""}
${o.body}
</main>
</body>
</html>
`.text;
}

/** A form's hidden CSRF field. */
export function csrfField(s: Session): SafeHtml {
  return html`<input type="hidden" name="_csrf" value="${s.csrf}">`;
}
