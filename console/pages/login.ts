/** The login form. The hidden token pairs with a cookie (double submit), so no other site can log a browser in. */
import { html, type SafeHtml } from "../html.ts";

export function loginPage(o: { token: string; user?: string; problem?: string; next?: string }): SafeHtml {
  return html`<h1>Log in</h1>
${o.problem ? html`<p class="flash" role="alert">${o.problem}</p>` : ""}
<form class="login" method="post" action="/login">
  <input type="hidden" name="_login" value="${o.token}">
  <input type="hidden" name="next" value="${o.next ?? "/"}">
  <label>User <input name="user" autocomplete="username" required value="${o.user ?? ""}"></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Log in</button>
</form>`;
}
