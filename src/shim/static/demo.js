// The demo page's buttons drive the widget through window.Switchboard.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-ask]");
  if (!button || !window.Switchboard) return;
  window.Switchboard.open();
  window.Switchboard.send(button.dataset.ask).catch(() => undefined);
});
