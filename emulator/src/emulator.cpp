// placeholder: implemented by the emulator work
