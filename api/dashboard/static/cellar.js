// Copy buttons for the connection strings; everything else is plain forms and htmx.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(source.textContent).then(done, () => select(source));
  } else {
    select(source);
  }
});

function select(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const chosen = window.getSelection();
  chosen.removeAllRanges();
  chosen.addRange(range);
}
