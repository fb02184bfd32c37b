// The portal's only script: previews of chosen images before upload, and a confirmation before
// destructive forms. Everything works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("input[type=file][data-preview]")) {
    input.addEventListener("change", () => {
      const box = document.getElementById(input.dataset.preview);
      for (const old of box.querySelectorAll("img")) URL.revokeObjectURL(old.src);
      box.replaceChildren();
      for (const file of input.files) {
        if (!file.type.startsWith("image/")) continue;
        const img = document.createElement("img");
        img.src = URL.createObjectURL(file);
        img.alt = file.name;
        img.title = file.name + " (" + Math.ceil(file.size / 1024) + " KiB)";
        box.appendChild(img);
      }
    });
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }
});
