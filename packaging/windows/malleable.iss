; Inno Setup script: Malleable for Windows from the PyInstaller bundle dist\malleable\.
;   iscc /DAppVersion=0.1.0 packaging\windows\malleable.iss   ->  dist\Malleable-0.1.0-windows-x64-setup.exe
; Built by .github/workflows/installers.yml; not tested on a Windows machine by hand yet.
#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define Root "..\.."

[Setup]
AppId={{6C1C3C8E-5A7B-4D55-9E0B-4C3D2A1F7B10}
AppName=Malleable
AppVersion={#AppVersion}
AppPublisher=Malleable developers
DefaultDirName={autopf}\Malleable
DefaultGroupName=Malleable
DisableProgramGroupPage=yes
; Per-user install by default (no admin prompt); the user may choose all users.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#Root}\dist
OutputBaseFilename=Malleable-{#AppVersion}-windows-x64-setup
SetupIconFile={#Root}\resources\icons\malleable.ico
UninstallDisplayIcon={app}\malleable.exe
Compression=lzma2/normal
SolidCompression=no
; A CUDA bundle (~3-4 GB) exceeds what one setup .exe can hold: build it with DiskSpanning=yes.
DiskSpanning=no
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#Root}\dist\malleable\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\Malleable"; Filename: "{app}\malleable.exe"
Name: "{autodesktop}\Malleable"; Filename: "{app}\malleable.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\malleable.exe"; Description: "{cm:LaunchProgram,Malleable}"; Flags: nowait postinstall skipifsilent
