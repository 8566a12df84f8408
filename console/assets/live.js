// Live updates from the bus: the server pushes each changed run as its rendered card over
// server-sent events (/live); this swaps it in. No polling, no framework.
(() => {
  const source = new EventSource("/live");
  const place = (card) => {
    const old = document.getElementById(card.id);
    const live = card.dataset.state === "requested" || card.dataset.state === "running";
    if (old) {
      old.replaceWith(card);
      return;
    }
    const list = document.getElementById("live-runs");
    if (list && live) {
      list.querySelector(".empty")?.remove();
      list.prepend(card);
    }
    const slot = document.querySelector(`[data-live-vm="${CSS.escape(card.dataset.vm)}"]`);
    if (slot) slot.replaceChildren(card);
  };
  source.addEventListener("run", (e) => {
    const t = document.createElement("template");
    t.innerHTML = JSON.parse(e.data).html; // rendered and escaped by the server (pages/run-card.ts)
    const card = t.content.firstElementChild;
    if (card) place(card);
  });
  source.addEventListener("open", () => document.body.classList.add("live"));
  source.addEventListener("error", () => document.body.classList.remove("live"));
})();
